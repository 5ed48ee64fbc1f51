"""The commands beside `run`: bench rows, `validate` checks, `validate published` tables, compare, sweep."""
