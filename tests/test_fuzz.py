"""Property-based tests: whatever a file, a link, the CLI or a Python caller hands in, every reader of
networks and settings either accepts it or refuses it with one of our errors (`LayerLabError`),
within a second, with a message that also reads as Korean; and any settings that validate make an augmentation that validates.

The values are arbitrary JSON (None, booleans, integers up to thousands of digits, floats with
NaN and infinities, text, lists and objects, nested), plus objects shaped like specs and settings
with real and made-up kinds, fields and values near each bound. Runs are derandomized, so CI
sees the same examples every time.
"""

from __future__ import annotations

import base64
import json
import math
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.data.augment import Augmentation
from core.data.bounds import AUGMENTATION_BOUNDS
from core.errors import LayerLabError
from core.model import network as networks
from core.model import vocabulary
from core.training import settings as training_settings
from core.training.settings import TrainSettings
from core.views import builder_state as builder
from tests.message_checks import assert_reads_korean

FUZZ = settings(
    max_examples=200,
    deadline=1000,  # milliseconds: each call must answer within a second
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module", autouse=True)
def warm_up():
    # The first pass on the meta device loads PyTorch's shape code (about a second, once per
    # process); the deadline is about each input, not that.
    networks.validate([{"kind": "dense"}, {"kind": "output"}])


# ----------------------------------------------------------------------------- values


def _edges(bound) -> list:
    """Values at, just inside and just outside a bound's ends."""
    values = []
    for end in (bound.minimum, bound.maximum):
        values += [end, end - 1, end + 1]
        if isinstance(end, float):
            values += [math.nextafter(end, -math.inf), math.nextafter(end, math.inf)]
    return values


SETTING_NAMES = [name for name in TrainSettings.__dataclass_fields__]
EDGE_NUMBERS = sorted(
    {value for name in SETTING_NAMES if (bound := training_settings.bound_of(name)) for value in _edges(bound)}
    | {value for fields in vocabulary.LAYER_FIELDS.values() for field in fields.values() if field.maximum is not None
       for value in (field.minimum, field.maximum, field.maximum + 1, field.minimum - 1)},
    key=float,
)
# Integers past 4,300 digits have no repr, so they are made by a function, not listed.
huge_integers = st.sampled_from([5000, -5000, 400, 30]).map(lambda digits: (10 ** abs(digits) + 7) * (1 if digits > 0 else -1))
HUGE_INTEGERS = [2**63, 2**64, 2**53, vocabulary.MAX_EDITABLE_NUMBER + 1]

# Integers that json.dumps can write (it refuses those of more than 4,300 digits), and all of them.
writable_integers = st.integers() | st.integers(min_value=-(10**300), max_value=10**300)
integers = writable_integers | st.sampled_from(HUGE_INTEGERS) | huge_integers
floats = st.floats(allow_nan=True, allow_infinity=True)
numbers = st.sampled_from(EDGE_NUMBERS) | floats
texts = st.text(max_size=30) | st.sampled_from([*vocabulary.LAYER_FIELDS, *vocabulary.ACTIVATION_NAMES, *SETTING_NAMES, ""])


def json_values(ints=integers) -> st.SearchStrategy:
    """Arbitrary JSON: scalars, and lists and objects of them, nested."""
    scalars = st.none() | st.booleans() | ints | floats | numbers | texts
    return st.recursive(scalars, lambda children: st.lists(children, max_size=5) | st.dictionaries(texts, children, max_size=5), max_leaves=30)


def layers(values: st.SearchStrategy) -> st.SearchStrategy:
    """Objects shaped like layers: a real or made-up kind, its fields and others, with any values."""
    kinds = st.sampled_from(list(vocabulary.LAYER_FIELDS)) | values
    field_names = st.sampled_from(sorted({name for fields in vocabulary.LAYER_FIELDS.values() for name in fields})) | texts
    return st.builds(lambda kind, fields: {"kind": kind, **fields}, kinds, st.dictionaries(field_names, values | numbers, max_size=4))


def specs(values: st.SearchStrategy) -> st.SearchStrategy:
    """Objects shaped like specs (and bare layer lists, and preset files holding one)."""
    layer_lists = st.lists(layers(values) | values, max_size=8)
    spec = st.builds(
        lambda layer_list, extra: {"layers": layer_list, **extra},
        layer_lists,
        st.dictionaries(st.sampled_from(["normalize", "name", "input_shape"]) | texts, values, max_size=2),
    )
    return spec | layer_lists | spec.map(lambda network: {"network": network}) | values


anything = specs(json_values())
writable = specs(json_values(writable_integers))
settings_values = st.dictionaries(st.sampled_from(SETTING_NAMES) | texts | integers | st.none(), json_values() | numbers, max_size=6)


def _deeply_nested(depth: int) -> list:
    nested: list = []
    for _ in range(depth):
        nested = [nested]
    return nested


deep = st.integers(min_value=1, max_value=5000).map(_deeply_nested)


def refuses_only_with_our_errors(call, *arguments) -> None:
    """Call; success is fine and so is a LayerLabError that also reads as Korean; anything else fails the test."""
    try:
        call(*arguments)
    except LayerLabError as error:
        assert_reads_korean(error)


def pack(text: str) -> str:
    """A `?net=` value around any text, made the way encode_link makes one."""
    return base64.urlsafe_b64encode(zlib.compress(text.encode("utf-8"), 9)).decode("ascii").rstrip("=")


def dumps(value) -> str:
    return json.dumps(value, ensure_ascii=False)


# ----------------------------------------------------------------------------- readers of networks


@FUZZ
@given(anything | deep)
def test_normalize_spec(value):
    refuses_only_with_our_errors(vocabulary.normalize_spec, value)


@FUZZ
@given(anything | deep)
def test_validate(value):
    refuses_only_with_our_errors(networks.validate, value)


@FUZZ
@given(anything | deep)
def test_check_editable(value):
    refuses_only_with_our_errors(builder.check_editable, value)


@FUZZ
@given(st.text(max_size=200) | st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=", max_size=200))
def test_decode_link_of_raw_text(text):
    refuses_only_with_our_errors(builder.decode_link, text)


@FUZZ
@given(writable.map(dumps) | st.integers(1, 100_000).map(lambda depth: "[" * depth) | st.integers(1, 6000).map(lambda digits: "9" * digits))
def test_decode_link_of_packed_json(text):
    refuses_only_with_our_errors(builder.decode_link, pack(text))


@FUZZ
@given(writable.map(dumps) | writable.map(lambda value: dumps(value).encode("utf-8")) | st.binary(max_size=200) | st.text(max_size=200)
       | st.integers(1, 100_000).map(lambda depth: "[" * depth + "]" * depth))
def test_spec_from_json(data):
    refuses_only_with_our_errors(builder.spec_from_json, data)


# ----------------------------------------------------------------------------- readers of settings


@FUZZ
@given(settings_values | json_values() | deep)
def test_settings_from_dict(values):
    refuses_only_with_our_errors(TrainSettings.from_dict, values)


@FUZZ
@given(st.dictionaries(st.sampled_from(list(AUGMENTATION_BOUNDS)), numbers | st.integers(-5, 2000) | st.floats(-5, 2000), min_size=1))
def test_settings_that_validate_make_an_augmentation_that_validates(values):
    try:
        checked = TrainSettings.from_dict(values)
    except training_settings.SettingsError:
        return
    Augmentation(**{name: getattr(checked, name) for name in AUGMENTATION_BOUNDS}).validate()
