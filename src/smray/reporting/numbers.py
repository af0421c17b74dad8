"""Numbers shown to people (metrics, predictions), with the digits their magnitude needs: three
significant digits, but never fewer than a number's whole part (10,939 stays 10,939), thousands
separated. An RMSE of 0.81 kWh reads 0.81, not 1; a house price reads 412,345.

    significant(10939.4) == "10,939"    significant(0.8134) == "0.813"    significant(3.2) == "3.2"
    with_deviation(0.8134, 0.0123) == ("0.813", "0.012")    # a value and its deviation: the same decimals
"""

from __future__ import annotations

import math

DIGITS = 3
MISSING = "n/a"  # a metric that is undefined on the data (an AUC of one class only: null in JSON)
SCIENTIFIC_BELOW = 1e-6  # smaller magnitudes read better as 1.23e-07 than as 0.000000123


def decimals(value: float, digits: int = DIGITS) -> int:
    """The decimals that show `digits` significant digits of `value` (none for its whole part's)."""
    if value == 0 or not math.isfinite(value):
        return 0
    return max(digits - 1 - math.floor(math.log10(abs(value))), 0)


def significant(value: float | None, digits: int = DIGITS) -> str:
    """`value` with `digits` significant digits (all of its whole part), trailing zeros dropped."""
    if value is None:
        return MISSING
    if not math.isfinite(value) or value == 0:
        return f"{value:g}"
    if abs(value) < SCIENTIFIC_BELOW:
        return f"{value:.{digits - 1}e}"
    text = f"{value:,.{decimals(value, digits)}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def with_deviation(value: float | None, deviation: float | None, digits: int = DIGITS) -> tuple[str, str]:
    """A value and its standard deviation at the same decimals: the value's `digits` significant ones, or
    more where the deviation needs them to show its first significant digit."""
    if value is None or deviation is None or not (math.isfinite(value) and math.isfinite(deviation)):
        return significant(value, digits), significant(deviation, digits)
    places = max(decimals(value, digits), decimals(deviation, 1))
    return f"{value:,.{places}f}", f"{deviation:,.{places}f}"
