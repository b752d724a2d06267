"""The per-shard stage files in memory, and their netCDF input/output without xarray.

A shard stage job (simulate, pretrain, align, downstream) does a few milliseconds of
science on a small shard; importing xarray (and pandas) took ~1 s of each such job, and
its h5netcdf backend ~0.2 s per file. :class:`Frame` holds what those files hold (named
variables with dimensions, coordinates, attributes) as numpy arrays, and
:func:`write_frame` / :func:`read_frame` write them with h5netcdf and read them with h5py.
The files are the netCDF4 files xarray writes: ``xarray.open_dataset`` gives exactly
:meth:`Frame.to_xarray` (tested), so results, aggregation and users keep xarray. Every
file of the workflow goes through these two functions (:mod:`twostage.io`; an
``xarray.Dataset`` is written as its frame); the reader, 5-15 times faster than xarray's
backend, also reads files xarray wrote: :func:`twostage.io.read_dataset` is
``read_frame(path).to_xarray()``.

The encodings are xarray's (CF conventions as xarray applies them): booleans are stored
as int8 with the attribute ``dtype = "bool"``, strings as variable-length UTF-8,
non-dimension coordinates are named in the ``coordinates`` attribute of each data
variable, and floats carry ``_FillValue = NaN``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np

#: Attributes of the HDF5 / netCDF-4 layer, not of the data.
_LAYER_ATTRS = frozenset(
    {
        "CLASS",
        "NAME",
        "REFERENCE_LIST",
        "DIMENSION_LIST",
        "_Netcdf4Dimid",
        "_Netcdf4Coordinates",
        "_FillValue",
        "coordinates",
        "_nc3_strict",
        "_NCProperties",
    }
)
_PHONY = b"This is a netCDF dimension but not a netCDF variable."


class Var(NamedTuple):
    """One variable: dimension names, values, attributes."""

    dims: tuple[str, ...]
    values: np.ndarray
    attrs: dict[str, Any]


def _var(dims: Iterable[str], values: Any, attrs: Mapping[str, Any] | None = None) -> Var:
    values = np.asarray(values)
    dims = tuple(dims)
    if values.ndim != len(dims):
        raise ValueError(f"{values.ndim}-d values for dimensions {dims}")
    return Var(dims, values, dict(attrs or {}))


def _same(a: Var, b: Var) -> bool:
    return (
        a.dims == b.dims
        and a.values.shape == b.values.shape
        and bool(np.all((a.values == b.values) | ((a.values != a.values) & (b.values != b.values))))
    )


class Frame:
    """Data variables, coordinates and attributes of one stage file (the subset of an
    ``xarray.Dataset`` the shard stages use: ``frame[name].values``, ``.dims``,
    ``.attrs``, ``name in frame``, :attr:`data_vars`, :attr:`dims`)."""

    def __init__(
        self,
        data_vars: Mapping[str, Var] | None = None,
        coords: Mapping[str, Var] | None = None,
        attrs: Mapping[str, Any] | None = None,
    ) -> None:
        self.data_vars: dict[str, Var] = {k: _var(*v) for k, v in (data_vars or {}).items()}
        self.coords: dict[str, Var] = {k: _var(*v) for k, v in (coords or {}).items()}
        self.attrs: dict[str, Any] = dict(attrs or {})
        both = self.data_vars.keys() & self.coords.keys()
        if both:
            raise ValueError(f"names both data variable and coordinate: {sorted(both)}")
        self.dims  # noqa: B018  (checks that the dimension sizes agree)

    @classmethod
    def from_variables(
        cls, variables: Mapping[str, tuple[tuple[str, ...], Any, Mapping]], prefix: str = ""
    ) -> Frame:
        """A frame of data variables ``{name: (dims, array, attrs)}``, names prefixed."""
        return cls({prefix + name: v for name, v in variables.items()})

    def __getitem__(self, name: str) -> Var:
        if name in self.data_vars:
            return self.data_vars[name]
        return self.coords[name]

    def __contains__(self, name: object) -> bool:
        return name in self.data_vars or name in self.coords

    @property
    def dims(self) -> dict[str, int]:
        """Dimension name -> size (raises ValueError if two variables disagree)."""
        sizes: dict[str, int] = {}
        for name, v in {**self.coords, **self.data_vars}.items():
            for dim, size in zip(v.dims, v.values.shape, strict=True):
                if sizes.setdefault(dim, size) != size:
                    raise ValueError(
                        f"dimension {dim!r} has size {sizes[dim]} and {size} (in {name!r})"
                    )
        return sizes

    def subset(self, names: Iterable[str]) -> Frame:
        """The frame with only the data variables ``names`` (coordinates kept)."""
        return Frame({k: self.data_vars[k] for k in names}, self.coords, self.attrs)

    def assign_coords(self, **coords: Any) -> Frame:
        """Add coordinates: a :class:`Var`, or a value (a 1-d array named like its
        dimension, or a scalar)."""
        new = dict(self.coords)
        for name, value in coords.items():
            if isinstance(value, Var):
                new[name] = value
            else:
                value = np.asarray(value)
                new[name] = _var((name,) if value.ndim == 1 else (), value)
        return Frame(self.data_vars, new, self.attrs)

    @staticmethod
    def merge(frames: Iterable[Frame], attrs: Mapping[str, Any] | None = None) -> Frame:
        """The union of the frames' variables and coordinates, with the attributes
        ``attrs`` (none of the frames'); a name in two frames must hold the same values
        (NaN equal to NaN)."""
        out: dict[str, dict[str, Var]] = {"data_vars": {}, "coords": {}}
        for frame in frames:
            for kind in out:
                for name, v in getattr(frame, kind).items():
                    old = out[kind].get(name)
                    if old is not None and not _same(old, v):
                        raise ValueError(f"conflicting values for variable {name!r} in merge")
                    out[kind][name] = v
        return Frame(**out, attrs=attrs)

    def to_xarray(self) -> Any:
        """The same data as an ``xarray.Dataset`` (what xarray reads from the file)."""
        import xarray as xr

        def variable(v: Var) -> xr.Variable:
            return xr.Variable(v.dims, v.values, v.attrs)

        return xr.Dataset(
            {k: variable(v) for k, v in self.data_vars.items()},
            coords={k: variable(v) for k, v in self.coords.items()},
            attrs=self.attrs,
        )

    @classmethod
    def from_xarray(cls, ds: Any) -> Frame:
        """A frame of an ``xarray.Dataset`` (its values, not lazily loaded arrays)."""

        def var(v: Any) -> Var:
            return Var(tuple(v.dims), np.asarray(v.values), dict(v.attrs))

        return cls(
            {k: var(v) for k, v in ds.data_vars.items()},
            {k: var(v) for k, v in ds.coords.items()},
            ds.attrs,
        )


# ------------------------------------------------------------------------ netCDF files
def _encode(v: Var) -> tuple[np.ndarray, dict[str, Any]]:
    """Values and attributes as stored (xarray's CF encoding of our dtypes)."""
    values, attrs = v.values, dict(v.attrs)
    if values.dtype.kind == "b":
        values, attrs["dtype"] = values.astype(np.int8), "bool"
    elif values.dtype.kind == "f":
        attrs = {"_FillValue": values.dtype.type(np.nan), **attrs}
    return values, attrs


def write_frame(frame: Frame, path: str, compression: Mapping[str, Any] | None = None) -> None:
    """Write ``frame`` to the netCDF-4 file ``path``; ``compression``: h5py filter
    keywords (e.g. ``compression="gzip"``) for every numeric array, as xarray's
    ``zlib`` encoding applies them."""
    import h5netcdf
    import h5py

    extra = [k for k, v in frame.coords.items() if v.dims != (k,)]
    with h5netcdf.File(path, "w") as f:
        f.dimensions = frame.dims
        for kind in ("coords", "data_vars"):
            for name, v in getattr(frame, kind).items():
                values, attrs = _encode(v)
                if values.dtype.kind in "UO":
                    var = f.create_variable(name, v.dims, dtype=h5py.string_dtype())
                    var[...] = values.astype(object)
                else:
                    fill = attrs.pop("_FillValue", None)
                    filters = compression if values.ndim and compression else {}
                    var = f.create_variable(name, v.dims, data=values, fillvalue=fill, **filters)
                    if fill is not None:
                        attrs = {"_FillValue": fill, **attrs}
                mine = [c for c in extra if set(frame.coords[c].dims) <= set(v.dims)]
                if kind == "data_vars" and mine:
                    attrs["coordinates"] = " ".join(mine)
                var.attrs.update(attrs)
        f.attrs.update(frame.attrs)


def _attr(value: Any) -> Any:
    """An HDF5 attribute as xarray reads it: text as str, one-element arrays as scalars."""
    if isinstance(value, bytes | np.bytes_):
        return value.decode()
    if isinstance(value, np.ndarray) and value.ndim == 1 and value.size == 1:
        return value[0]
    return value


def read_frame(path: str) -> Frame:
    """Read a netCDF-4 file written by :func:`write_frame` or by xarray's h5netcdf engine
    (variables in the root group, as the stages write them), decoded as xarray decodes it.
    Raises whatever h5py raises for a file that is not HDF5."""
    import h5py

    with h5py.File(path, "r") as f:
        datasets = dict(f.items())
        attrs = {name: dict(ds.attrs) for name, ds in datasets.items()}
        dimid = {
            int(a["_Netcdf4Dimid"]): name
            for name, a in attrs.items()
            if a.get("CLASS") == b"DIMENSION_SCALE" and "_Netcdf4Dimid" in a
        }
        variables: dict[str, Var] = {}
        coord_names: set[str] = set()
        for name, ds in datasets.items():
            a = attrs[name]
            if isinstance(a.get("NAME"), bytes | np.bytes_) and a["NAME"].startswith(_PHONY):
                continue  # a dimension without a coordinate variable
            if a.get("CLASS") == b"DIMENSION_SCALE":
                dims: tuple[str, ...] = (name,)
            elif "_Netcdf4Coordinates" in a:
                dims = tuple(dimid[int(i)] for i in np.atleast_1d(a["_Netcdf4Coordinates"]))
            elif "DIMENSION_LIST" in a:
                dims = tuple(f[refs[0]].name.lstrip("/") for refs in a["DIMENSION_LIST"])
            else:
                dims = ()
            string = h5py.check_string_dtype(ds.dtype) is not None
            values = np.asarray(ds.asstr()[()] if string else ds[()])
            if string:
                values = values.astype(str)
            fill = a.get("_FillValue")
            if fill is not None and values.dtype.kind in "fiu":
                # CF masking as xarray does it: integers become float64, fill -> NaN
                fill = np.asarray(fill).ravel()[0]
                if values.dtype.kind != "f":
                    values = values.astype(np.float64)
                if fill == fill:  # a NaN fill needs no masking
                    values = np.where(values == fill, np.nan, values)
            clean = {k: _attr(val) for k, val in a.items() if k not in _LAYER_ATTRS}
            if clean.get("dtype") == "bool":
                del clean["dtype"]
                values = values.astype(bool)
            coord_names.update(_attr(a.get("coordinates", "")).split())
            variables[name] = Var(dims, values, clean)
        global_attrs = {k: _attr(v) for k, v in f.attrs.items() if k not in _LAYER_ATTRS}
    coord_names.update(str(global_attrs.pop("coordinates", "")).split())
    coord_names.update(name for name, v in variables.items() if v.dims == (name,))
    return Frame(
        {k: v for k, v in variables.items() if k not in coord_names},
        {k: v for k, v in variables.items() if k in coord_names},
        global_attrs,
    )
