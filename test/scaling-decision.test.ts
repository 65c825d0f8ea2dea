/**
 * The one scaling decision (infra/workspace/scaling-decision.ts): the cluster's HPA behaviour and
 * the local emulation both come from it.
 */
import { describe, expect, it } from "vitest";
import {
  decideScale,
  hpaBehavior,
  INITIAL_SCALING_STATE,
  kedaTarget,
  podsForProcesses,
  type ScalingObservation,
  type ScalingPolicy,
  type ScalingState,
} from "../infra/workspace/scaling-decision.js";

const POLICY: ScalingPolicy = {
  minReplicas: 0,
  maxReplicas: 8,
  processesPerPod: 4,
  activationProcesses: 0,
  scaleUp: { stabilizationWindowSeconds: 0, podsPerPeriod: 8, periodSeconds: 15 },
  scaleDown: { stabilizationWindowSeconds: 60, podsPerPeriod: 1, periodSeconds: 30 },
};

/** Runs a sequence of observations through decideScale, the pod count following each decision. */
function simulate(
  policy: ScalingPolicy,
  steps: Array<Omit<ScalingObservation, "currentPods">>,
  startPods: number,
): number[] {
  let state: ScalingState = INITIAL_SCALING_STATE;
  let pods = startPods;
  const out: number[] = [];
  for (const s of steps) {
    const d = decideScale(policy, { ...s, currentPods: pods }, state);
    state = d.state;
    pods = d.pods;
    out.push(pods);
  }
  return out;
}

describe("podsForProcesses", () => {
  it("is the ceiling of desired processes over processes per pod", () => {
    expect(podsForProcesses(0, 4)).toBe(0);
    expect(podsForProcesses(1, 4)).toBe(1);
    expect(podsForProcesses(4, 4)).toBe(1);
    expect(podsForProcesses(5, 4)).toBe(2);
    expect(podsForProcesses(13, 3)).toBe(5);
    expect(podsForProcesses(Number.NaN, 3)).toBe(0);
  });
});

describe("decideScale", () => {
  it("jumps straight to ⌈desired ÷ nprocs⌉ on a burst, within maxReplicas", () => {
    const d = decideScale(POLICY, {
      atSeconds: 0,
      currentPods: 0,
      desiredProcesses: 22,
      busyPods: 0,
    });
    expect(d.pods).toBe(6);
    expect(d.metricPods).toBe(6);
    const capped = decideScale(POLICY, {
      atSeconds: 0,
      currentPods: 1,
      desiredProcesses: 400,
      busyPods: 1,
    });
    expect(capped.pods).toBe(8);
  });

  it("rate-limits scale-up by pods per period", () => {
    const slow = { ...POLICY, scaleUp: { ...POLICY.scaleUp, podsPerPeriod: 2 } };
    const pods = simulate(
      slow,
      [0, 5, 10, 15, 20, 30].map((t) => ({ atSeconds: t, desiredProcesses: 32, busyPods: 0 })),
      0,
    );
    // 2 pods per 15 s: 2 at t=0, none more until t=15, then 4, then 6 at t=30.
    expect(pods).toEqual([2, 2, 2, 4, 4, 6]);
  });

  it("holds the highest recommendation of the scale-down window, then removes 1 pod per period", () => {
    const steps = [0, 10, 20, 50, 59, 60, 61, 75, 90, 91, 120, 150, 180].map((t) => ({
      atSeconds: t,
      desiredProcesses: t === 0 ? 16 : 0,
      busyPods: 0,
    }));
    const pods = simulate(POLICY, steps, 4);
    // The 4-pod recommendation of t=0 stays in the 60 s window until t=60; then one pod per 30 s.
    expect(pods).toEqual([4, 4, 4, 4, 4, 3, 3, 3, 2, 2, 1, 0, 0]);
  });

  it("never goes below the pods holding results, whatever the metric says", () => {
    let state: ScalingState = INITIAL_SCALING_STATE;
    let pods = 6;
    for (let t = 0; t <= 600; t += 15) {
      const d = decideScale(
        POLICY,
        { atSeconds: t, currentPods: pods, desiredProcesses: 0, busyPods: 3 },
        state,
      );
      state = d.state;
      pods = d.pods;
      expect(pods).toBeGreaterThanOrEqual(3);
    }
    expect(pods).toBe(3);
    // Even with a zero-length window and unlimited removal, the floor holds.
    const eager = {
      ...POLICY,
      scaleDown: { stabilizationWindowSeconds: 0, podsPerPeriod: 100, periodSeconds: 1 },
    };
    const d = decideScale(eager, {
      atSeconds: 0,
      currentPods: 6,
      desiredProcesses: 0,
      busyPods: 5,
    });
    expect(d.pods).toBe(5);
  });

  it("keeps an idle workspace at zero until the metric passes the activation threshold", () => {
    const p = { ...POLICY, activationProcesses: 2 };
    const idle = decideScale(p, { atSeconds: 0, currentPods: 0, desiredProcesses: 2, busyPods: 0 });
    expect(idle.pods).toBe(0);
    const go = decideScale(p, { atSeconds: 0, currentPods: 0, desiredProcesses: 3, busyPods: 0 });
    expect(go.pods).toBe(1);
  });

  it("respects minReplicas and maxReplicas", () => {
    const p = { ...POLICY, minReplicas: 2, maxReplicas: 3 };
    expect(
      decideScale(p, { atSeconds: 0, currentPods: 2, desiredProcesses: 0, busyPods: 0 }).pods,
    ).toBe(2);
    expect(
      decideScale(p, { atSeconds: 0, currentPods: 2, desiredProcesses: 99, busyPods: 0 }).pods,
    ).toBe(3);
  });

  it("shrinks a whole bursty study back to zero: idle, burst, idle", () => {
    const steps: Array<Omit<ScalingObservation, "currentPods">> = [];
    for (let t = 0; t < 60; t += 5) steps.push({ atSeconds: t, desiredProcesses: 0, busyPods: 0 });
    for (let t = 60; t < 120; t += 5)
      steps.push({ atSeconds: t, desiredProcesses: 30, busyPods: 8 });
    for (let t = 120; t < 600; t += 5)
      steps.push({ atSeconds: t, desiredProcesses: 0, busyPods: 0 });
    const pods = simulate(POLICY, steps, 0);
    expect(pods.slice(0, 12)).toEqual(Array(12).fill(0));
    expect(pods[12]).toBe(8);
    expect(pods.at(-1)).toBe(0);
  });

  it("is pure: the same inputs give the same decision and the state is not mutated", () => {
    const state: ScalingState = {
      recommendations: [{ atSeconds: 0, pods: 4 }],
      changes: [{ atSeconds: 0, delta: 4 }],
    };
    const frozen = JSON.stringify(state);
    const obs = { atSeconds: 10, currentPods: 4, desiredProcesses: 0, busyPods: 0 };
    expect(decideScale(POLICY, obs, state)).toEqual(decideScale(POLICY, obs, state));
    expect(JSON.stringify(state)).toBe(frozen);
  });

  it("rejects a policy validation would have rejected", () => {
    expect(() =>
      decideScale(
        { ...POLICY, minReplicas: 5, maxReplicas: 2 },
        {
          atSeconds: 0,
          currentPods: 0,
          desiredProcesses: 0,
          busyPods: 0,
        },
      ),
    ).toThrow(/invalid scaling policy/);
  });
});

describe("hpaBehavior and kedaTarget (the rendered parameters)", () => {
  it("renders the same windows and rates the decision uses", () => {
    expect(hpaBehavior(POLICY)).toEqual({
      scaleUp: {
        stabilizationWindowSeconds: 0,
        selectPolicy: "Max",
        policies: [{ type: "Pods", value: 8, periodSeconds: 15 }],
      },
      scaleDown: {
        stabilizationWindowSeconds: 60,
        selectPolicy: "Min",
        policies: [{ type: "Pods", value: 1, periodSeconds: 30 }],
      },
    });
  });

  it("targets nprocs processes per pod, so the HPA computes ⌈desired ÷ nprocs⌉", () => {
    const t = kedaTarget({ processesPerPod: 3, activationProcesses: 1 });
    expect(t.desiredWorkers).toEqual({ targetValue: 3, activationTargetValue: 1 });
    expect(t.busyPods).toEqual({ targetValue: 1, activationTargetValue: 0 });
    // The HPA's AverageValue rule: ceil(metric / target) pods.
    for (const desired of [1, 3, 4, 10]) {
      expect(Math.ceil(desired / t.desiredWorkers.targetValue)).toBe(podsForProcesses(desired, 3));
    }
  });
});
