"""The shard stages' files without xarray (twostage.frame): what xarray reads from them
equals what xarray itself would have written, for every case and stage; old files
(written by xarray) read back the same; a shard stage job never imports xarray."""

import subprocess
import sys

import h5py
import numpy as np
import pytest
import xarray as xr
from conftest import ROOT, env, tiny_params

from twostage import io, run_point, stages
from twostage.api import study_spec
from twostage.cases import REGISTRY
from twostage.config import expand_study
from twostage.frame import Frame, Var

PROVENANCE = ("created", "git_commit")


def _chain(name):
    (point,) = expand_study("s", study_spec(name, tiny_params(name), replicates=4, seed=5))
    sim = stages.simulate(point, 1, 4)
    pre = stages.pretrain(sim)
    al = stages.align(pre)
    return {
        "simulate": sim,
        "pretrain": pre,
        "align": al,
        "downstream": stages.downstream(al, sim),
        "theory": stages.theory(point),
    }


def _drop_provenance(ds):
    return ds.drop_attrs(deep=False).assign_attrs(
        {k: v for k, v in ds.attrs.items() if k not in PROVENANCE}
    )


def _xarray_writes(ds, path, stage):
    """The reference: xarray's own writer (h5netcdf engine), with xarray's zlib encoding
    (level 4, shuffle) on every numeric array of a compressed stage's file."""
    ds = ds.assign_attrs(io.provenance(stage))
    encoding = {
        name: {"zlib": True, "complevel": 4, "shuffle": True}
        for name, var in ds.variables.items()
        if stage in io.COMPRESSED_STAGES and var.ndim > 0 and var.dtype.kind in "fiub"
    }
    ds.to_netcdf(path, engine=io.ENGINE, encoding=encoding)
    return path


def _same_file_as_xarray_writes(ds, tmp_path, stage):
    """io.write_dataset's file equals xarray's own for xarray.open_dataset (every variable,
    coordinate, dtype, attribute, compression filter) and for the frame reader."""
    ours = io.write_dataset(ds, tmp_path / f"{stage}.nc", stage)
    xds = ds.to_xarray() if isinstance(ds, Frame) else ds
    theirs = _xarray_writes(xds, tmp_path / f"{stage}-xarray.nc", stage)
    a, b = (_open(path) for path in (ours, theirs))
    xr.testing.assert_identical(_drop_provenance(a), _drop_provenance(b))
    xr.testing.assert_identical(
        _drop_provenance(a), _drop_provenance(xds.assign_attrs(io.provenance(stage)))
    )
    for var in a.variables:
        assert a[var].dtype == b[var].dtype, (stage, var)
    with h5py.File(ours) as f, h5py.File(theirs) as g:
        for var in a.variables:
            assert f[var].compression == g[var].compression, (stage, var)
            assert f[var].compression_opts == g[var].compression_opts, (stage, var)
    # the frame reader (io.read_dataset, io.read_shard) gives the same, from either file
    for path, want in ((ours, a), (theirs, b)):
        xr.testing.assert_identical(io.read_dataset(path, stage), want)
        back = io.read_shard(path, stage).to_xarray()
        xr.testing.assert_identical(back, want)
        for key, value in back.attrs.items():
            assert type(value) is type(want.attrs[key]), (stage, key)


def _open(path):
    with xr.open_dataset(path, engine=io.ENGINE) as ds:
        return ds.load()


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_shard_files_are_what_xarray_writes_and_reads(name, tmp_path):
    for stage, frame in _chain(name).items():
        _same_file_as_xarray_writes(frame, tmp_path, stage)


def test_aggregated_files_are_what_xarray_writes_and_reads(tmp_path):
    """The aggregated files (risk, theory_summary, sweep; compressed, with string and
    point coordinates), written from xarray datasets through the same frame writer, and
    CF-masked integers and floats read by io.read_dataset as xarray reads them."""
    out = run_point("gmm", tiny_params("gmm"), replicates=5, seed=2, ks_bootstrap=3)
    files = {
        "risk": out["risk"],
        "theory_summary": out["theory_summary"],
        "sweep": stages.sweep(
            [stages.theory(p).to_xarray() for p in expand_study("s", _sweep_spec())]
        ),
    }
    for stage, ds in files.items():
        _same_file_as_xarray_writes(ds, tmp_path, stage)
    masked = xr.Dataset(
        {
            "count": ("x", np.array([1, -1, 3], dtype=np.int64)),
            "value": ("x", np.array([0.5, -9.0, np.nan])),
        },
        attrs={"stage": "risk"},
    )
    path = tmp_path / "masked.nc"
    encoding = {"count": {"_FillValue": -1}, "value": {"_FillValue": -9.0}}
    masked.to_netcdf(path, engine=io.ENGINE, encoding=encoding)
    got = io.read_dataset(path, "risk")
    xr.testing.assert_identical(got, _open(path))
    assert got["count"].dtype == np.float64 and np.isnan(got["count"].values[1])


def _sweep_spec():
    params = {k: v for k, v in tiny_params("factor").items() if k != "n"}
    return {**study_spec("factor", params, replicates=0), "grid": {"n": [40, 80]}}


def test_frame_checks_dimensions_and_merge_conflicts():
    with pytest.raises(ValueError, match="dimension 'replicate' has size 3 and 2"):
        Frame({"a": (("replicate",), np.zeros(3), {}), "b": (("replicate",), np.zeros(2), {})})
    with pytest.raises(ValueError, match="2-d values for dimensions"):
        Frame({"a": (("replicate",), np.zeros((2, 2)), {})})
    one = Frame({"a": (("replicate",), np.array([1.0, np.nan]), {})})
    same = Frame({"a": Var(("replicate",), np.array([1.0, np.nan]), {})})
    assert Frame.merge([one, same])["a"].values.tolist()[0] == 1.0  # NaN equals NaN
    other = Frame({"a": (("replicate",), np.array([1.0, 2.0]), {})})
    with pytest.raises(ValueError, match="conflicting values for variable 'a'"):
        Frame.merge([one, other])


def test_a_stage_job_imports_neither_xarray_nor_pandas(tmp_path):
    """The point of twostage.frame: start-up (issue 10). The chain by hand, each stage a
    process that lists, at its end, the heavy packages it imported (the limit needs
    scipy's special functions, nothing else here)."""
    probe = (
        "import runpy, sys\n"
        "sys.argv = sys.argv[1:]\n"
        "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
        "except SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "print('HEAVY', sorted({m.split('.')[0] for m in sys.modules} & {'xarray', 'pandas', "
        "'scipy', 'matplotlib', 'seaborn', 'sklearn'}))"
    )
    spec = study_spec("factor", tiny_params("factor"), replicates=3, seed=5)
    (point,) = expand_study("s", spec)
    runs = {
        "simulate": ["--point", point.to_json(), "--out", "sim.nc"],
        "pretrain": ["--in", "sim.nc", "--out", "pre.nc"],
        "align": ["--in", "pre.nc", "--out", "al.nc"],
        "downstream": ["--align", "al.nc", "--simulate", "sim.nc", "--out", "down.nc"],
        "theory": ["--point", point.job_json(), "--out", "theory.nc"],
    }
    for name, args in runs.items():
        res = subprocess.run(
            [sys.executable, "-c", probe, str(ROOT / "scripts" / f"{name}.py"), *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env=env(),
            check=False,
        )
        assert res.returncode == 0, res.stderr
        want = "HEAVY ['scipy']" if name == "theory" else "HEAVY []"
        assert want in res.stdout, (name, res.stdout)
    assert io.read_dataset(tmp_path / "down.nc", "downstream").sizes["replicate"] == 3
