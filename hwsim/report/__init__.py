"""Tables, figures and the HTML report, from a run's DataFrames: `summary` (the numbers), `write` (the
folder), `html`, `console`, and one module of figures per view (`plots`, `pipeline`, `fabric`, ...).

Nothing is imported here, so a module that needs the numbers does not load matplotlib."""
