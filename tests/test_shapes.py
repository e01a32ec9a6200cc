"""Curve-shape taxonomy: analytic curves of every shape, with and without noise, walls and edge cases."""

from __future__ import annotations

import json

import numpy as np
import pytest

from losslandscape.landscape.shapes import SHAPES, CurveShape, classify_curve


def grid(low, high, n):
    return np.linspace(low, high, n)


def noisy(y, seed, level=0.01):
    """``y`` plus Gaussian noise with standard deviation ``level`` of its range (seeded)."""
    rng = np.random.default_rng(seed)
    return y + level * np.ptp(y) * rng.standard_normal(y.shape)


def basin_lambdas(shape: CurveShape, lam: np.ndarray) -> np.ndarray:
    return lam[shape.minima]


# name -> (lambdas, losses, label, lambdas of the basins)
CASES = {
    "v-basin parabola, odd grid": (grid(-1, 1, 51), lambda x: x**2, "v-basin", [0.0]),
    "v-basin |x|, even asymmetric grid": (grid(-0.5, 1.0, 40), np.abs, "v-basin", [0.0]),
    "v-side shifted parabola": (grid(-1, 1, 41), lambda x: (x - 0.6) ** 2, "v-side", [0.6]),
    "v-side monotone, basin at the boundary": (grid(-1, 1, 30), np.exp, "v-side", [-1.0]),
    "v-side scan starting at 0": (grid(0, 1.5, 31), lambda x: (x - 1) ** 2, "v-side", [1.0]),
    "w-basin double well": (grid(-0.3, 1.0, 53), lambda x: x**2 * (x - 0.7) ** 2, "w-basin", [0.0, 0.7]),
    "w-peak odd grid": (grid(-0.8, 0.8, 33), lambda x: (x**2 - 0.25) ** 2, "w-peak", [-0.5, 0.5]),
    "w-peak even grid": (grid(-0.8, 0.8, 40), lambda x: (x**2 - 0.25) ** 2, "w-peak", [-0.5, 0.5]),
    "vvv-basin symmetric": (
        grid(-0.8, 0.8, 81),
        lambda x: -np.cos(2 * np.pi * x / 0.6),
        "vvv-basin",
        [-0.6, 0, 0.6],
    ),
    "vvv-basin asymmetric": (
        grid(-0.8, 1.4, 100),
        lambda x: -np.cos(2 * np.pi * x / 0.6),
        "vvv-basin",
        [-0.6, 0, 0.6, 1.2],
    ),
    "other: two basins, 0 at neither": (
        grid(-0.1, 1.1, 49),
        lambda x: ((x - 0.5) ** 2 - 0.09) ** 2,
        "other",
        [0.2, 0.8],
    ),
    "other: 0 at a maximum among four basins": (
        grid(-0.8, 0.8, 81),
        lambda x: np.cos(2 * np.pi * x / 0.6),
        "other",
        [-0.8, -0.3, 0.3, 0.8],
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_analytic_curves(name):
    lam, f, label, expected = CASES[name]
    shape = classify_curve(lam, f(lam))
    assert shape.label == label, shape.reason
    # Clean curves: every basin on the grid point nearest its analytic minimum.
    step = np.diff(lam).max()
    np.testing.assert_allclose(basin_lambdas(shape, lam), expected, atol=step / 2 + 1e-12)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", CASES)
def test_noise_at_one_percent_does_not_change_the_shape(name, seed):
    # Without the prominence threshold every noise wiggle would be a basin. Caveat: on a flat
    # bottom (or top) noise can also move the extremum more than one grid step from 0 and change
    # the label (about 1 seed in 4 for the 51-point parabola); these seeds are ones where it does not.
    lam, f, label, expected = CASES[name]
    shape = classify_curve(lam, noisy(f(lam), seed))
    assert shape.label == label, shape.reason
    # Noise moves a minimum along a flat bottom, never into another well (wells are >= 0.5 apart).
    np.testing.assert_allclose(basin_lambdas(shape, lam), expected, atol=0.2)


def test_noise_gives_extra_basins_without_the_prominence_threshold():
    lam = grid(-1, 1, 51)
    y = noisy(lam**2, seed=0)
    assert classify_curve(lam, y).label == "v-basin"
    assert len(classify_curve(lam, y, prominence=0.0).minima) > 1


def test_prominence_decides_whether_a_shallow_second_well_is_a_basin():
    lam = grid(-0.6, 1.2, 73)  # step 0.025: 0 at index 24, 0.7 at index 52
    y = lam**2 * (lam - 0.7) ** 2 + 0.01 * lam  # the well at 0.7 is ~2 % of the range deep
    default = classify_curve(lam, y)
    assert (default.label, default.minima) == ("v-basin", [24])
    low = classify_curve(lam, y, prominence=0.01)
    assert (low.label, low.minima) == ("w-basin", [24, 52])
    assert low.prominence == pytest.approx(0.01 * np.ptp(y))


def steep_v(lam, at):
    """A sharp V at ``at``, capped at 1: away from its minimum the loss is far above the threshold."""
    return np.minimum(100 * np.abs(lam - at), 1.0)


def test_within_one_grid_step_of_zero_is_at_zero():
    lam = grid(-1, 1, 41)  # step 0.05
    assert classify_curve(lam, steep_v(lam, 0.05)).label == "v-basin"
    assert classify_curve(lam, steep_v(lam, 0.10)).label == "v-side"


def test_the_step_is_the_grid_spacing_near_zero():
    # Dense near 0 (step 0.01), coarse far away (step 0.1): a minimum at 0.03 is 3 steps from 0.
    lam = np.concatenate([grid(-1, -0.1, 10), grid(-0.05, 0.05, 11), grid(0.1, 1, 10)])
    assert classify_curve(lam, steep_v(lam, 0.03)).label == "v-side"
    assert classify_curve(lam, steep_v(lam, 0.01)).label == "v-basin"


def test_zero_on_the_floor_of_a_wide_basin_is_in_the_basin():
    # A trained model: a wide, nearly level floor whose lowest sample is 3 steps from 0.
    lam = grid(-1, 1, 41)
    floor = np.maximum(np.abs(lam + 0.15) - 0.3, 0.0) ** 2 + 1e-3 * (lam + 0.15) ** 2
    shape = classify_curve(lam, floor)
    assert (shape.label, shape.minima) == ("v-basin", [17])
    # the same distance with the center high on the wall of the basin is a slope
    assert classify_curve(lam, (lam + 0.15) ** 2 + 2.0 * np.maximum(lam + 0.15, 0)).label == "v-side"
    # and a barrier between 0 and the lowest point keeps them apart: 0 is then a basin of its own
    barrier = floor + 0.2 * np.exp(-((lam + 0.08) / 0.02) ** 2)
    assert classify_curve(lam, barrier).label == "w-basin"


def test_a_hill_is_a_w_peak_with_basins_at_the_boundaries():
    # Documented boundary rule: both ends rise away (towards 0), so both are basins.
    lam = grid(-1, 1, 21)
    shape = classify_curve(lam, -(lam**2))
    assert (shape.label, shape.minima, shape.maxima) == ("w-peak", [0, 20], [10])


def test_endpoints_are_basins_only_when_the_curve_rises_away_by_the_threshold():
    lam = grid(-1, 1, 41)
    y = lam**2
    y[-1] = y[-2] - 0.01  # a 1 % dip at the right end: below the threshold
    assert classify_curve(lam, y).minima == [20]
    y[-1] = y[-2] - 0.2  # 20 %: the end is a second basin
    assert classify_curve(lam, y).minima == [20, 40]


def test_overflowing_ends_are_walls():
    lam = grid(-1.5, 1.5, 61)
    y = lam**2
    y[np.abs(lam) > 1.2] = np.inf
    y[0], y[-1] = np.nan, -np.inf
    shape = classify_curve(lam, y)
    assert (shape.label, shape.minima) == ("v-basin", [30])
    np.testing.assert_allclose(shape.prominence, 0.05 * 1.2**2)

    lam = grid(-1, 1, 41)
    y = (lam**2 - 0.25) ** 2
    y[[0, 1, -2, -1]] = np.inf
    assert (classify_curve(lam, y).label, classify_curve(lam, y).minima) == ("w-peak", [10, 30])


def test_a_nan_barrier_still_separates_two_basins():
    lam = grid(-0.3, 1.0, 53)
    y = lam**2 * (lam - 0.7) ** 2
    y[24:29] = np.nan  # the barrier around 0.35 overflowed
    shape = classify_curve(lam, y)
    assert (shape.label, shape.minima) == ("w-basin", [12, 40])


def test_a_nan_is_higher_than_every_finite_loss():
    lam = grid(-1, 1, 21)
    y = lam**2
    y[14], y[15] = 5.0, np.nan  # a finite spike next to an overflow: the overflow is the top
    assert classify_curve(lam, y).maxima == [15]


def test_non_finite_center_or_too_few_finite_points_is_other():
    lam = grid(-1, 1, 21)
    y = lam**2
    y[10] = np.nan
    shape = classify_curve(lam, y)
    assert shape.label == "other" and "not finite" in shape.reason
    y = np.full(21, np.inf)
    y[[9, 10]] = 1.0
    shape = classify_curve(lam, y)
    assert shape.label == "other" and "finite points" in shape.reason


def test_flat():
    lam = grid(-1, 1, 21)
    assert classify_curve(lam, np.full(21, 2.5)).label == "flat"
    assert classify_curve(lam, 2.5 + 1e-9 * lam).label == "flat"
    assert classify_curve(lam, 1e4 + 1e-3 * lam**2).label == "flat"  # relative to |mean| for large losses
    assert classify_curve(lam, 1e-3 * lam**2).label == "v-basin"  # a small but real curve is not flat


def test_result_fields_and_json():
    lam = grid(-1, 1, 21)
    shape = classify_curve(lam, lam**2)
    assert shape.label in SHAPES
    assert shape.center_index == 10 and shape.maxima == []
    assert shape.reason == "1 basin (lambda=0), lambda=0 at the one at lambda=0"
    data = json.loads(json.dumps(shape.to_dict()))
    assert data == {
        "label": "v-basin",
        "minima": [10],
        "maxima": [],
        "center_index": 10,
        "prominence": pytest.approx(0.05),
        "reason": shape.reason,
        "uncertain": False,  # no error bars given: nothing is known to be within them
    }


@pytest.mark.parametrize(
    "lam, y, message",
    [
        (grid(-1, 1, 5), np.zeros(4), "same length"),
        (np.array([-1.0, 0.0, 0.0, 1.0]), np.arange(4.0), "strictly increasing"),
        (np.array([1.0, 0.0, -1.0]), np.arange(3.0), "strictly increasing"),
        (np.array([-1.0, np.nan, 1.0]), np.arange(3.0), "strictly increasing"),
        (grid(0.1, 1, 5), np.arange(5.0), "lambda=0 must lie within"),
        (np.zeros((2, 3)), np.zeros((2, 3)), "1-D"),
    ],
)
def test_invalid_inputs_raise(lam, y, message):
    with pytest.raises(ValueError, match=message):
        classify_curve(lam, y)


@pytest.mark.parametrize("prominence", [-0.1, 1.5])
def test_invalid_prominence_raises(prominence):
    lam = grid(-1, 1, 5)
    with pytest.raises(ValueError, match="prominence"):
        classify_curve(lam, lam**2, prominence=prominence)
