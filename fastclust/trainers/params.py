"""What each method parameter allows: a declared type and range per parameter, checked when a
method is built (before any network, file or epoch), with an error that names the parameter,
its value and what is allowed. ``fastclust train -h`` prints the same declarations.

A spec's ``parse`` returns the value in its type (``--set widths=16`` gives ``(16,)``, the
text "false" gives False) or raises :class:`Refused`; :func:`check` turns that into a
:class:`~fastclust.errors.ParameterError`.
"""
import math
import numbers

from ..errors import ParameterError


class Refused(Exception):
    """A value outside its spec (the caller names the parameter)."""


class Spec:
    """What every spec has: ``text`` (what it allows) and ``parse``."""

    text = ""

    def parse(self, value):
        raise NotImplementedError

    def accepts(self, value):
        try:
            self.parse(value)
        except Refused:
            return False
        return True


def _integer(value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise Refused
    return int(value)


def _number(value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise Refused
    return float(value)


class Int(Spec):
    def __init__(self, low, high=None):
        self.low, self.high = low, high
        self.text = f"an integer >= {low}" + ("" if high is None else f" and <= {high}")

    def parse(self, value):
        value = _integer(value)
        if value < self.low or (self.high is not None and value > self.high):
            raise Refused
        return value


class Float(Spec):
    """A finite number in an interval; ``low_open`` / ``high_open`` exclude its ends."""

    def __init__(self, low=None, high=None, *, low_open=False, high_open=False):
        self.low, self.high, self.low_open, self.high_open = low, high, low_open, high_open
        if high is None:
            self.text = f"a number {'>' if low_open else '>='} {low:g}"
        else:
            self.text = (f"a number in {'(' if low_open else '['}{low:g}, {high:g}"
                         f"{')' if high_open else ']'}")

    def parse(self, value):
        value = _number(value)
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            raise Refused
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            raise Refused
        return value


class Text(Spec):
    text = "a string"

    def parse(self, value):
        if not isinstance(value, str):
            raise Refused
        return value


class Bool(Spec):
    text = "true or false"

    def parse(self, value):
        # The string "false" is truthy: only these spellings are taken.
        text = str(value).lower()
        if text not in ("true", "false", "1", "0"):
            raise Refused
        return text in ("true", "1")


class Choice(Spec):
    def __init__(self, *options):
        self.options = options
        self.text = "one of " + ", ".join(options)

    def parse(self, value):
        if value not in self.options:
            raise Refused
        return value


class Ints(Spec):
    """One or more integers >= ``low``; a lone integer is a 1-tuple."""

    def __init__(self, low):
        self.item = Int(low)
        self.text = f"integers >= {low}, comma-separated"

    def parse(self, value):
        values = value if isinstance(value, (tuple, list)) else (value,)
        if not values:
            raise Refused
        return tuple(self.item.parse(v) for v in values)


class Range(Spec):
    """Two numbers ``a, b`` of ``item`` with ``a <= b``."""

    def __init__(self, item):
        self.item = item
        self.text = f"two numbers a,b with a <= b, each {item.text}"

    def parse(self, value):
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            raise Refused
        low, high = (self.item.parse(v) for v in value)
        if low > high:
            raise Refused
        return low, high


class Optional(Spec):
    """``spec``, or None meaning ``meaning``."""

    def __init__(self, spec, meaning):
        self.spec = spec
        self.text = f"{spec.text}, or None ({meaning})"

    def parse(self, value):
        return None if value is None else self.spec.parse(value)


PROBABILITY = Float(0, 1)
# A run's seed: torch takes seeds below 2**64, and the trainer seeds a second generator with seed + 1.
SEED = Int(0, 2**63 - 1)


def check(owner, name, value, spec):
    """``value`` of parameter ``name`` of ``owner`` (a method's name) in its type, or a
    ParameterError saying what ``spec`` allows."""
    try:
        return spec.parse(value)
    except Refused:
        raise ParameterError(f"{owner}: {name}={value!r} is not allowed: {name} is {spec.text}") from None
