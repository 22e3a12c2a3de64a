"""The simulator through the Python module: configs, workloads (mixes, CSV and NumPy traces),
results as NumPy arrays, and errors."""
import numpy as np
import pytest

import autoscale
from autoscale import GiB

HOUR = 3600.0


def small_config(**kw):
    c = autoscale.SimConfig()
    c.nodes = 2
    c.duration = HOUR
    c.step = 5
    c.seed = 7
    for k, v in kw.items():
        setattr(c, k, v)
    return c


def two_vm_arrays():
    """Two VMs over an hour: one steady, one that jumps from 0.1 to 2 cores at 20 minutes."""
    times = np.arange(0, HOUR + 1, 300.0)
    t = np.concatenate([times, times])
    vm = ["steady"] * len(times) + ["jumpy"] * len(times)
    cpu = np.concatenate([np.full(len(times), 0.5), np.where(times < 1200, 0.1, 2.0)])
    mem = np.concatenate([np.full(len(times), 1500.0), np.where(times < 1200, 600.0, 3000.0)])
    return t, vm, cpu, mem


def csv_of(t, vm, cpu, mem):
    lines = ["time_s,vm,cpu_cores,memory_mib"]
    lines += ["%r,%s,%r,%r" % (a, b, c, d) for a, b, c, d in zip(t, vm, cpu, mem)]
    return "\n".join(lines) + "\n"


def run(config, **kw):
    sim = autoscale.Simulation(config, **kw)
    sim.run()
    assert sim.now == config.duration
    return sim.results()


def test_mix_run_gives_arrays():
    r = run(small_config(), mix=autoscale.WorkloadMix("diurnal:1,bursty:1"), vms=12)
    vms = r.vms
    assert len(vms["name"]) == 12
    assert vms["cu_hours_allocated"].dtype == np.float64 and vms["cu_hours_allocated"].shape == (12,)
    # Every VM had at least what its demand needed on average, in a healthy small fleet.
    assert np.all(vms["cu_hours_allocated"] > 0)
    fleet = r.fleet_series
    n = len(fleet["time_s"])
    assert n > 10
    assert np.all(np.diff(fleet["time_s"]) > 0)
    for key in ("reserved_milli_cpu", "allocated_memory_bytes", "demand_milli_cpu", "shortage_memory_bytes"):
        assert fleet[key].shape == (n,)
    nodes = r.node_series
    assert nodes["reserved_milli_cpu"].shape == (n, 2)
    # The fleet series is the sum over nodes.
    np.testing.assert_allclose(nodes["reserved_milli_cpu"].sum(axis=1), fleet["reserved_milli_cpu"])
    seconds, vm_index = r.reaction_times
    assert len(seconds) == len(vm_index) == vms["reactions"].sum()
    assert np.all(seconds >= 0)
    s = r.summary("mix")
    assert s["label"] == "mix" and s["vms"] == 12 and s["nodes"] == 2
    assert s["cu_hours_allocated"] == pytest.approx(vms["cu_hours_allocated"].sum(), rel=1e-6)


def test_trace_from_numpy_equals_trace_from_csv(tmp_path):
    t, vm, cpu, mem = two_vm_arrays()
    from_arrays = autoscale.Trace.from_arrays(t, vm, cpu, mem)
    path = tmp_path / "two.csv"
    path.write_text(csv_of(t, vm, cpu, mem))
    from_csv = autoscale.Trace.read_csv(str(path))
    assert from_arrays.vm_names == from_csv.vm_names == ["steady", "jumpy"]
    assert from_arrays.end_s == HOUR
    a = run(small_config(), trace=from_arrays)
    b = run(small_config(), trace=from_csv)
    assert a.vm_csv() == b.vm_csv()
    assert a.series_csv() == b.series_csv()
    # The jump is met: the jumpy VM grows to cover 2 cores (8 CU of 250m).
    assert a.vms["peak_milli_cpu"][1] >= 2000
    assert a.vms["reactions"][1] >= 1


def test_skipping_equals_stepping():
    mix = autoscale.WorkloadMix("diurnal:2,bursty:2,spike:1,idle:1")
    skip = run(small_config(), mix=mix, vms=16)
    step = run(small_config(step_every_vm=True), mix=mix, vms=16)
    assert skip.vm_csv() == step.vm_csv()
    assert skip.series_csv() == step.series_csv()
    assert skip.summary_json() == step.summary_json()
    assert skip.agent_asks < step.agent_asks


def test_vm_series_are_views_into_the_results():
    t, vm, cpu, mem = two_vm_arrays()
    r = run(small_config(series_vms=[1]), trace=autoscale.Trace.from_arrays(t, vm, cpu, mem))
    series = r.vm_series
    assert len(series) == 1 and series[0]["vm"] == 1
    s = series[0]
    n = len(s["time_s"])
    assert n == int(HOUR / 5) or n == int(HOUR / 5) + 1
    demand = s["demand_milli_cpu"]
    goal = s["goal_cu"]
    for a in (demand, goal, s["allocated_memory_bytes"]):
        assert not a.flags.owndata and not a.flags.writeable
        assert a.shape == (n,)
    # The trace's demand, step by step: 0.1 cores before 20 minutes, 2 after.
    times = s["time_s"]
    np.testing.assert_array_equal(demand[times < 1200], 100)
    np.testing.assert_array_equal(demand[times >= 1200], 2000)
    # Allocation follows: by the end the VM has the 2 cores.
    assert s["allocated_milli_cpu"][-1] >= 2000
    # The views keep the results alive.
    del r, series
    assert int(demand[-1]) == 2000 and np.nanmax(goal) >= 8


def test_lfc_goal_in_simulation():
    config = small_config()
    config.scaling.enable_lfc_metrics = True
    # Working sets large against memory, so the LFC part decides some goals.
    mix = autoscale.WorkloadMix("diurnal:1,idle:1")
    mix.lfc_base_gib = (4.0, 8.0)
    config.series_vms = [0]
    r = run(config, mix=mix, vms=6)
    s = r.summary()
    assert s["lfc_enabled"] is True
    assert s["goal_by_lfc"] > 0
    assert r.vms["goal_by_lfc"].sum() == s["goal_by_lfc"]
    lfc = r.vm_series[0]["lfc_cu"]
    assert np.any(np.isfinite(lfc))


def test_errors_become_exceptions_with_the_library_messages(tmp_path):
    with pytest.raises(ValueError, match=r"^t\.csv:3: cpu_cores: 'abc' is not a number$"):
        autoscale.Trace.parse_csv("time_s,vm,cpu_cores,memory_mib\n0,a,1,100\n5,a,abc,100\n", "t.csv")
    with pytest.raises(ValueError, match=r"^cols:2: memory_mib: -1 is negative$"):
        autoscale.Trace.from_arrays([0.0, 5.0], ["a", "a"], [1.0, 1.0], [100.0, -1.0], source="cols")
    with pytest.raises(ValueError):
        autoscale.Trace.from_arrays([0.0, 5.0], ["a"], [1.0, 1.0], [100.0, 1.0])
    missing = str(tmp_path / "nope.csv")
    with pytest.raises(OSError, match="nope.csv"):
        autoscale.Trace.read_csv(missing)
    with pytest.raises(ValueError, match="diurnal"):
        autoscale.WorkloadMix("sunny:1")
    bad = small_config()
    bad.duration = 7  # not a whole number of 5 s steps
    with pytest.raises(ValueError, match="duration"):
        bad.validate()
    with pytest.raises(ValueError, match="duration"):
        autoscale.Simulation(bad, mix=autoscale.WorkloadMix(), vms=2)
    with pytest.raises(ValueError, match="exactly one"):
        autoscale.Simulation(small_config())
    sim = autoscale.Simulation(small_config(), mix=autoscale.WorkloadMix(), vms=2)
    sim.run_until(60)
    assert sim.now == 60
    sim.results()
    with pytest.raises(RuntimeError, match="results"):
        sim.run()


def test_html_report_of_two_runs():
    mix = autoscale.WorkloadMix("bursty:1")
    a = run(small_config(), mix=mix, vms=4)
    c = small_config()
    c.scaling.downscale_stabilization_window = 300
    b = run(c, mix=mix, vms=4)
    html = autoscale.html_report([("default", a), ("stable", b)])
    assert html.startswith("<!DOCTYPE html>") or html.startswith("<html")
    assert "stable" in html and "<svg" in html
