"""A surface in the formats 3D tools read, through meshio: ParaView/VTK (``.vtu``) and Blender meshes
(``.obj``, ``.ply``).

- ``<scan>.vtu``: the flat (alpha, beta, 0) grid as quadrilaterals with every ``{split}_{metric}``
  grid (``train_loss``, ``test_accuracy``, ...) as point data. Heights are left to ParaView's
  *Warp By Scalar* so one file serves the linear and any rescaled view. (meshio writes no ``.vts``
  structured grid; a ``.vtu`` of quads holds the same points, values and connectivity.)
- ``<scan>.ply``: the surface itself, z = the first split's loss (or its log10), as triangles, with
  every grid as vertex properties; ``<scan>.obj``: the same geometry, for tools that only read OBJ.
  Points whose height is not finite (a diverged loss far from the minimum) and their triangles
  are left out: a hole in the mesh, where a vertex at infinity or NaN would break the renderer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..files import atomic_path
from .interactive import loss_grid, surface_splits


def plane_points(result, heights: np.ndarray | None = None) -> np.ndarray:
    """``(y*x, 3)`` points in the npz's ``(y, x)`` row order: point ``j * nx + i`` is ``(x[i], y[j])``."""
    x, y = np.meshgrid(result.axes["x"], result.axes["y"])
    z = np.zeros_like(x) if heights is None else heights
    return np.stack([x.ravel(), y.ravel(), z.ravel()], axis=1)


def grid_quads(ny: int, nx: int) -> np.ndarray:
    """The ``(ny-1)(nx-1)`` cells of the grid, corners counter-clockwise (normals along +z)."""
    index = np.arange(ny * nx).reshape(ny, nx)
    return np.stack([index[:-1, :-1], index[:-1, 1:], index[1:, 1:], index[1:, :-1]], axis=-1).reshape(-1, 4)


def point_data(result) -> dict[str, np.ndarray]:
    return {key: np.asarray(grid, dtype=float).ravel() for key, grid in result.values.items()}


def _write(mesh, path: Path, file_format: str, **options) -> Path:
    with atomic_path(path) as tmp:
        mesh.write(str(tmp), file_format=file_format, **options)
    return path


def export_vtu(result, path: str | Path):
    """The grid for ParaView: flat quads, every grid as point data (binary, zlib-compressed)."""
    import meshio

    ny, nx = len(result.axes["y"]), len(result.axes["x"])
    mesh = meshio.Mesh(plane_points(result), [("quad", grid_quads(ny, nx))], point_data=point_data(result))
    return _write(mesh, Path(path), "vtu", binary=True, compression="zlib")


def surface_mesh(result, log_scale: bool = False):
    """The loss surface as a triangle mesh: z = the first split's loss (log10 if asked), finite points only."""
    import meshio

    split = surface_splits(result)[0]
    heights = loss_grid(result, split, log_scale)
    ny, nx = heights.shape
    points = plane_points(result, heights)
    quads = grid_quads(ny, nx)
    triangles = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])
    keep = np.isfinite(points[:, 2])
    triangles = triangles[keep[triangles].all(axis=1)]
    new_index = np.cumsum(keep) - 1  # old point number -> number among the kept points
    data = {key: values[keep] for key, values in point_data(result).items()}
    return meshio.Mesh(points[keep], [("triangle", new_index[triangles].astype(np.int32))], point_data=data)  # PLY indices are 32-bit


def export_surface(result, folder: str | Path, log_scale: bool = False) -> list[Path]:
    """``<scan>.vtu``, ``<scan>.ply`` and ``<scan>.obj`` of a plane scan in ``folder``."""
    folder = Path(folder)
    mesh = surface_mesh(result, log_scale)
    return [
        export_vtu(result, folder / f"{result.name}.vtu"),
        _write(mesh, folder / f"{result.name}.ply", "ply", binary=True),
        _write(meshio_geometry(mesh), folder / f"{result.name}.obj", "obj"),
    ]


def meshio_geometry(mesh):
    """The mesh without point data: OBJ has no place for it."""
    import meshio

    return meshio.Mesh(mesh.points, mesh.cells)


def share_surface(result, output_dir: str | Path, log_scale: bool = False, path_xy: np.ndarray | None = None,
                  axis_labels: tuple[str, str] = ("alpha", "beta")):
    """Everything a plane scan is shared as: ``figures/<scan>.html`` (interactive) and
    ``surfaces/<scan>.{vtu,ply,obj}`` beside its ``.npz``; returns the plotly figure (for W&B) and the paths."""
    from .interactive import surface_figure, write_html

    output_dir = Path(output_dir)
    figure = surface_figure(result, log_scale, path_xy, axis_labels)
    html = write_html(figure, output_dir / "figures" / f"{result.name}.html")
    return figure, [html, *export_surface(result, output_dir / "surfaces", log_scale)]
