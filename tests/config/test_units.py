import pytest

from hwsim.config.units import UnitError, format_quantity, parse_quantity


@pytest.mark.parametrize(
    ("text", "kind", "expected"),
    [
        ("4 MiB", "size", 4 * 2**20),
        ("512 kB", "size", 512e3),
        ("1.5 GB", "size", 1.5e9),
        ("2 GiB", "size", 2 * 2**30),
        ("64 bit", "size", 8),
        ("25 Gb/s", "rate", 25e9 / 8),
        ("25 Gbps", "rate", 25e9 / 8),
        ("3 GB/s", "rate", 3e9),
        ("100 MiB/s", "rate", 100 * 2**20),
        ("1.5 us", "time", 1.5e-6),
        ("1.5 µs", "time", 1.5e-6),
        ("20 ns", "time", 20e-9),
        ("2 ms", "time", 2e-3),
        ("1e-3 s", "time", 1e-3),
        ("1 GHz", "frequency", 1e9),
        ("700 MHz", "frequency", 700e6),
        ("312 TFLOP/s", "flop_rate", 312e12),
        ("19.5 TFLOPS", "flop_rate", 19.5e12),
        ("-1 MiB", "size", -(2**20)),  # the sign parses; bounds are the schema's job
    ],
)
def test_parses_si_and_iec(text, kind, expected):
    assert parse_quantity(text, kind) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("value", "kind", "hint"),
    [
        (25, "rate", "needs its unit"),
        ("25", "rate", "rate"),
        ("25 GB", "rate", "unit of size"),
        ("1 GHz", "time", "unit of frequency"),
        ("fast", "time", "time"),
        (True, "size", "needs its unit"),
        ("4 furlongs", "size", "size"),
    ],
)
def test_rejects_with_what_was_expected(value, kind, hint):
    with pytest.raises(UnitError, match=hint):
        parse_quantity(value, kind)


def test_bits_and_bytes_differ():
    assert parse_quantity("8 Gb/s", "rate") * 8 == parse_quantity("8 GB/s", "rate")


def test_format_round_trips_the_common_cases():
    assert format_quantity(25e9 / 8, "rate") == "25 Gb/s"
    assert format_quantity(4 * 2**20, "size") == "4 MiB"
    assert format_quantity(1.5e-6, "time") == "1.5 us"
    assert format_quantity(0.0, "time") == "0 s"
    assert format_quantity(312e12, "flop_rate") == "312 TFLOP/s"
