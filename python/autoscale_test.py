"""The core through the Python module: the goal with its breakdown, the state machine, errors."""
import math

import pytest

import autoscale
from autoscale import GiB, Resources

CU = Resources(250, GiB)


def test_compute_goal_breakdown_cpu():
    # The reference formula: cpu = load / loadAverageFractionTarget / CU vCPU.
    g = autoscale.compute_goal(
        autoscale.ScalingConfig(),
        autoscale.SystemMetrics(load_avg_1m=1.0, load_avg_5m=1.0, memory_usage_bytes=1.5 * GiB),
    )
    assert g.cpu_cu == pytest.approx(1.0 / 0.9 / 0.25)
    # memory = round(usage / memoryUsageFractionTarget) / CU memory.
    assert g.memory_cu == pytest.approx(2.0)
    assert g.goal_cu == 4
    assert g.decided_by == "cpu"
    assert g.has_all_metrics
    assert g.lfc_cu is None


def test_compute_goal_memory_decides_and_compute_unit_matters():
    config = autoscale.ScalingConfig()
    metrics = autoscale.SystemMetrics(load_avg_1m=0.1, load_avg_5m=0.1, memory_usage_bytes=3 * GiB)
    g = autoscale.compute_goal(config, metrics)
    assert g.decided_by == "memory"
    assert g.goal_cu == 4  # 3 GiB / 0.75 = 4 GiB
    g2 = autoscale.compute_goal(config, metrics, compute_unit=Resources(500, 2 * GiB))
    assert g2.goal_cu == 2


def test_compute_goal_without_metrics():
    g = autoscale.compute_goal(autoscale.ScalingConfig(), None)
    assert g.goal_cu == 0
    assert g.decided_by == "none"
    assert not g.has_all_metrics


def test_compute_goal_lfc_part():
    config = autoscale.ScalingConfig()
    config.enable_lfc_metrics = True
    # 8 GiB of distinct pages in every window from 1 to 60 minutes: a flat working set.
    pages = [8 * GiB / 8192] * 60
    g = autoscale.compute_goal(
        config,
        autoscale.SystemMetrics(load_avg_1m=0.1, load_avg_5m=0.1, memory_usage_bytes=GiB / 2),
        autoscale.LfcMetrics(pages),
    )
    assert g.lfc_cu is not None
    # lfc = working set / lfcToMemoryRatio / CU memory.
    assert g.lfc_cu == pytest.approx(8 / 0.75, rel=1e-6)
    assert g.decided_by == "lfc"
    assert g.goal_cu == math.ceil(8 / 0.75)


def test_invalid_config_raises_the_library_message():
    config = autoscale.ScalingConfig()
    config.lfc_window_size_minutes = 1
    with pytest.raises(ValueError, match=r"^scaling config: lfcWindowSizeMinutes must be in \[2, 60\], got 1$"):
        autoscale.compute_goal(config, autoscale.SystemMetrics())
    with pytest.raises(ValueError, match="lfcWindowSizeMinutes"):
        config.validate()


def test_scaling_config_from_reference_json():
    c = autoscale.ScalingConfig.from_json('{"downscaleStabilizationWindow": "300s"}')
    assert c.downscale_stabilization_window == 300
    assert c.load_average_fraction_target == 0.9
    with pytest.raises(ValueError, match="loadAverageFractionTarget"):
        autoscale.ScalingConfig.from_json('{"loadAverageFractionTarget": -1}')
    with pytest.raises(ValueError, match="scaling config JSON"):
        autoscale.ScalingConfig.from_json("{not json")


def test_resources_parse():
    assert Resources.parse("1250m/5GiB") == Resources(1250, 5 * GiB)
    assert str(Resources(1250, 5 * GiB)) == "1250m/5GiB"
    with pytest.raises(ValueError, match="^Resources: "):
        Resources.parse("250/1GiB")


def drive(s, t):
    """Carries out the state's actions one at a time, each succeeding at once (as the agent's
    executor would, with instant peers) until it has nothing to do; returns what was done."""
    done = []
    for _ in range(50):
        a = s.next_actions(t)
        if a.scheduler_request is not None:
            target = a.scheduler_request.target
            s.scheduler_request_started(t, target)
            s.scheduler_request_succeeded(t + 0.001, target)
            done.append(("scheduler", target))
        elif a.vm_resize is not None:
            s.vm_resize_started(t, a.vm_resize.target)
            s.vm_resize_succeeded(t + 0.001, a.vm_resize.target)
            done.append(("vm", a.vm_resize.target))
        elif a.monitor_upscale is not None:
            s.monitor_upscale_started(t, a.monitor_upscale.target)
            s.monitor_upscale_succeeded(t + 0.001)
            done.append(("monitor_upscale", a.monitor_upscale.target))
        elif a.monitor_downscale is not None:
            s.monitor_downscale_started(t, a.monitor_downscale.target)
            s.monitor_downscale_approved(t + 0.001)
            done.append(("monitor_downscale", a.monitor_downscale.target))
        else:
            return done, a, t
        t += 0.002
    raise AssertionError("the state never settled: %r" % done)


def test_state_machine_grows_in_order():
    """Grow: a permit from the scheduler, then the VM resize, then the monitor told."""
    s = autoscale.State(CU, CU, autoscale.Bounds(1, 8))
    t = 1000.0
    s.monitor_connected(t)
    s.update_system_metrics(t, autoscale.SystemMetrics(1.0, 1.0, 0.5 * GiB))
    assert s.goal.goal_cu == 4 and s.goal.decided_by == "cpu"
    want = Resources(1000, 4 * GiB)
    assert s.desired(t).resources == want

    done, idle, t = drive(s, t)
    assert s.current == want and s.permit == want and s.monitor_approved == want
    kinds = [k for k, _ in done]
    grant = done.index(("scheduler", want))
    assert kinds.index("vm") > grant
    assert kinds.index("monitor_upscale") > kinds.index("vm")
    # Never grown past the permit: every resize target was granted before.
    granted = [r for k, r in done[: kinds.index("vm")] if k == "scheduler"]
    assert all(r == want for k, r in done if k == "vm") and want in granted
    # Nothing to do but the periodic report: the state says how long to wait.
    assert idle.wait is not None and 0 < idle.wait <= 15

    # Shrink: the monitor approves first, then the VM shrinks, then the scheduler hears of it.
    s.update_system_metrics(t, autoscale.SystemMetrics(0.1, 0.1, 0.5 * GiB))
    done, _, t = drive(s, t)
    kinds = [k for k, _ in done]
    assert s.current == CU
    assert kinds.index("monitor_downscale") < kinds.index("vm") < len(kinds)
    assert done[-1] == ("scheduler", CU)


def test_state_refuses_a_permit_above_the_request():
    s = autoscale.State(CU, CU, autoscale.Bounds(1, 8))
    s.update_system_metrics(0, autoscale.SystemMetrics(1.0, 1.0, 0.5 * GiB))
    s.scheduler_request_started(0, Resources(1000, 4 * GiB))
    with pytest.raises(ValueError, match=r"^invalid permit 2000m/8GiB: more than requested \(1000m/4GiB\)$"):
        s.scheduler_request_succeeded(0.1, Resources(2000, 8 * GiB))
    assert s.permit is None
    with pytest.raises(RuntimeError, match="without a request in flight"):
        s.scheduler_request_succeeded(0.2, Resources(1000, 4 * GiB))


def test_state_rejects_bad_arguments():
    with pytest.raises(ValueError, match="bounds"):
        autoscale.State(CU, CU, autoscale.Bounds(3, 2))
    with pytest.raises(ValueError, match="not finite"):
        autoscale.State(CU, CU, autoscale.Bounds(1, 2)).next_actions(float("nan"))
