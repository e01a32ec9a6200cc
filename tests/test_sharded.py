"""A scan sharded over two Gloo processes writes the file run_scan writes, bit for bit.

One process group (spawning costs seconds) runs every sharded case in turn; the single-process
references run in the test process on the same inputs, read from the same files.
"""

import functools
from pathlib import Path

import numpy as np
import pytest
import torch

from losslandscape.files import read_npz
from losslandscape.store import save_arrays
from losslandscape.landscape.evaluator import Evaluator, parameters_of
from losslandscape.landscape.scans import VALUES_PER_POINT, PlaneScan, ScanResult, next_block, run_scan
from losslandscape.landscape.sharded import (
    launch_sharded,
    partial_path,
    rank_fingerprint,
    run_sharded_scan,
    scan_fingerprint,
    shard_indices,
)

WORLD = 2
SCAN = dict(x_span=(-1.0, 1.5), y_span=(-0.5, 1.0), x_points=7, y_points=5)  # 35 points: not divisible by 2
PROVENANCE = {"checkpoint": "tiny", "bn_mode": "eval"}
SENTINEL = -7.0  # planted in a rank's partial file: seeing it in the result proves the rank resumed
RESUMED_POINTS = 5


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread here and in every rank: the same thread count in the reference and the
    ranks (a condition of bit-identity), and no spinning thread pools on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_model() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.Tanh(), torch.nn.Linear(16, 10))


def write_problem(folder: Path) -> None:
    """Seeded model, data and directions, saved so that every process reads identical tensors."""
    torch.manual_seed(0)
    model = make_model()
    theta = parameters_of(model)
    torch.save(
        {
            "state": model.state_dict(),
            "x": torch.randn(2, 90, 1, 8, 8),
            "y": torch.randint(0, 10, (2, 90)),
            "directions": [{n: torch.randn_like(t) * 0.3 for n, t in theta.items()} for _ in range(3)],
        },
        folder / "problem.pt",
    )


def read_problem(folder: Path, other_directions: bool = False):
    """``(scan, theta, directions, evaluators)``; two splits with uneven evaluation batches."""
    saved = torch.load(folder / "problem.pt", weights_only=True)
    model = make_model()
    model.load_state_dict(saved["state"])
    directions = saved["directions"][1:] if other_directions else saved["directions"][:2]
    evaluators = {
        split: Evaluator(model, saved["x"][i], saved["y"][i], batch_size=32) for i, split in enumerate(("train", "test"))
    }
    return PlaneScan(**SCAN), parameters_of(model), directions, evaluators


def sharded_cases(folder: Path, rank: int, world_size: int) -> None:
    """Runs in every spawned rank: each case writes files that the test compares afterwards."""
    torch.set_num_threads(1)
    scan, theta, directions, evaluators = read_problem(folder)
    run = functools.partial(run_sharded_scan, scan, theta, directions, evaluators, provenance=PROVENANCE, progress=False)
    run(folder / "sharded.npz").save(folder / f"returned{rank}.npz")
    if rank == 0:
        (folder / "listening.txt").write_text("\n".join(listening_addresses()))
    run(folder / "sharded_vmap.npz", points_per_batch=3, progress=True)  # rank 0 draws a bar
    run(folder / "resumed.npz")
    try:  # rank 1 builds other directions: every rank must refuse, none may hang
        _, _, other, _ = read_problem(folder, other_directions=rank == 1)
        run_sharded_scan(scan, theta, other, evaluators, folder / "mixed.npz", progress=False)
    except ValueError as error:
        (folder / f"error{rank}.txt").write_text(str(error))


def listening_addresses() -> list[str]:
    """Local addresses (hex, as in /proc/net/tcp) on which this process's sockets listen; Linux only."""
    inodes = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = fd.readlink().name
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    addresses = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # state 0A: LISTEN
                addresses.append(fields[1].split(":")[0])
    return addresses


def plant_partial_of_rank1(folder: Path) -> slice:
    """Rank 1's partial file as a killed run leaves it: its first points done (with sentinel values)."""
    scan, theta, directions, evaluators = read_problem(folder)
    points = len(scan.coordinates())
    shard = shard_indices(points, 1, WORLD)
    values = np.full((shard.stop - shard.start, len(evaluators), VALUES_PER_POINT), np.nan)
    values[:RESUMED_POINTS] = SENTINEL
    fingerprint = rank_fingerprint(scan_fingerprint(scan, theta, directions, evaluators), 1, WORLD, shard)
    path = partial_path(folder / "resumed.npz", rank=1)
    save_arrays(path, {"values": values, "done": RESUMED_POINTS}, {}, fingerprint)
    return shard


def assert_same_file(actual: Path, expected: Path) -> None:
    arrays, provenance = read_npz(actual)
    expected_arrays, expected_provenance = read_npz(expected)
    assert provenance == expected_provenance
    assert sorted(arrays) == sorted(expected_arrays)
    for key in expected_arrays:
        np.testing.assert_array_equal(arrays[key], expected_arrays[key], err_msg=key)


@pytest.fixture(scope="module")
def sharded_run(tmp_path_factory):
    """The single-process references and one 2-rank Gloo group that runs :func:`sharded_cases`."""
    folder = tmp_path_factory.mktemp("sharded")
    write_problem(folder)
    scan, theta, directions, evaluators = read_problem(folder)
    reference = functools.partial(run_scan, scan, theta, directions, evaluators, provenance=PROVENANCE, progress=False)
    reference(folder / "single.npz")
    reference(folder / "single_vmap.npz", points_per_batch=3)
    resumed_shard = plant_partial_of_rank1(folder)
    launch_sharded(functools.partial(sharded_cases, folder), WORLD)
    return folder, resumed_shard


def test_sharded_scan_writes_the_single_process_file_bit_for_bit(sharded_run):
    folder, _ = sharded_run
    assert_same_file(folder / "sharded.npz", folder / "single.npz")
    leftovers = [p.name for p in folder.glob("sharded*partial*")]
    assert not leftovers, f"partial files left behind: {leftovers}"


def test_sharded_scan_with_vmap_batches_is_bit_identical_too(sharded_run):
    folder, _ = sharded_run
    assert_same_file(folder / "sharded_vmap.npz", folder / "single_vmap.npz")


def test_every_rank_returns_the_saved_result(sharded_run):
    folder, _ = sharded_run
    for rank in range(WORLD):
        returned = ScanResult.load(folder / f"returned{rank}.npz")
        saved = ScanResult.load(folder / "sharded.npz")
        assert returned.provenance == saved.provenance
        for key, grid in saved.values.items():
            np.testing.assert_array_equal(returned.values[key], grid)


def test_a_restarted_rank_resumes_its_partial_file(sharded_run):
    folder, shard = sharded_run
    resumed, single = ScanResult.load(folder / "resumed.npz"), ScanResult.load(folder / "single.npz")
    kept = np.arange(shard.start, shard.start + RESUMED_POINTS)  # not recomputed: the planted values stay
    for key, grid in single.values.items():
        flat, expected = resumed.values[key].ravel(), grid.ravel()
        assert (flat[kept] == SENTINEL).all(), key
        rest = np.setdiff1d(np.arange(len(expected)), kept)
        np.testing.assert_array_equal(flat[rest], expected[rest], err_msg=key)
    assert not partial_path(folder / "resumed.npz", rank=1).exists()


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's socket tables")
def test_rank0_listens_on_loopback_only(sharded_run):
    folder, _ = sharded_run
    addresses = (folder / "listening.txt").read_text().split()
    assert addresses, "the rendezvous store should be listening in rank 0"
    assert set(addresses) == {"0100007F"}, addresses  # 127.0.0.1; IPv6 or 0.0.0.0 listeners would show here


def test_ranks_with_different_inputs_all_refuse(sharded_run):
    folder, _ = sharded_run
    for rank in range(WORLD):
        assert "fingerprints differ by rank" in (folder / f"error{rank}.txt").read_text()
    assert not (folder / "mixed.npz").exists()


@pytest.mark.parametrize("num_points", [1, 2, 35, 36, 101 * 101])
@pytest.mark.parametrize("world_size", [1, 2, 3, 8])
@pytest.mark.parametrize("unit", [1, 4])
def test_shards_cover_every_point_once_contiguously_and_balanced(num_points, world_size, unit):
    shards = [shard_indices(num_points, rank, world_size, unit) for rank in range(world_size)]
    covered = np.concatenate([np.arange(num_points)[s] for s in shards])
    np.testing.assert_array_equal(covered, np.arange(num_points))  # each index once, in rank order
    sizes = [s.stop - s.start for s in shards]
    assert max(sizes) - min(sizes) <= unit
    assert all(s.start % unit == 0 for s in shards if s.stop > s.start)


@pytest.mark.parametrize("args", [(10, 2, 2), (10, -1, 2), (10, 0, 0), (-1, 0, 1), (10, 0, 1, 0)])
def test_impossible_shards_are_rejected(args):
    with pytest.raises(ValueError, match="must be|need"):
        shard_indices(*args)


def test_fingerprint_matches_run_scan_and_blocks_are_whole_vmap_batches(tmp_path):
    write_problem(tmp_path)
    scan, theta, directions, evaluators = read_problem(tmp_path)
    result = run_scan(scan, theta, directions, evaluators, tmp_path / "s.npz", progress=False)
    assert scan_fingerprint(scan, theta, directions, evaluators) == result.provenance["fingerprint"]
    # about save_every_s of work at the last block's pace, in whole batches, at least one batch
    assert next_block(seconds=0.5, points=10, points_per_batch=1, save_every_s=5.0) == 100
    assert next_block(seconds=1.0, points=6, points_per_batch=3, save_every_s=5.0) == 30
    assert next_block(seconds=1.0, points=7, points_per_batch=3, save_every_s=5.0) == 33
    assert next_block(seconds=9.0, points=3, points_per_batch=3, save_every_s=5.0) == 3


def test_without_a_process_group_it_is_run_scan(tmp_path):
    write_problem(tmp_path)
    scan, theta, directions, evaluators = read_problem(tmp_path)
    run_scan(scan, theta, directions, evaluators, tmp_path / "single.npz", PROVENANCE, progress=False)
    run_sharded_scan(scan, theta, directions, evaluators, tmp_path / "sharded.npz", PROVENANCE, progress=False)
    assert_same_file(tmp_path / "sharded.npz", tmp_path / "single.npz")
