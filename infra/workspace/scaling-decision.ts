/**
 * How many worker pods a Dask workspace should run: ONE pure function, {@link decideScale}, used
 * by the local emulation (`npm run local -- --autoscale`) at every tick, and the source of the
 * numbers the Kubernetes objects are rendered with ({@link hpaBehavior}, {@link kedaTarget}), so
 * that the cluster and the emulation follow the same policy.
 *
 * The inputs are what the scheduler knows:
 * - `desiredProcesses`: `dask_scheduler_desired_workers` on its `/metrics` page (the scheduler's
 *   `adaptive_target()`: enough worker processes for the queued and running work, and for the
 *   data in memory);
 * - `busyPods`: the pods whose workers hold results or run tasks (`dask_workspace_busy_pods`,
 *   `dask_workspace.scaling_metrics`). The study still needs what they hold.
 *
 * The decision follows the Kubernetes HPA's algorithm (kube-controller-manager
 * `normalizeDesiredReplicasWithBehaviors`), because on a cluster the HPA that KEDA creates is what
 * acts:
 * 1. recommendation = max(⌈desiredProcesses ÷ processesPerPod⌉, busyPods), clamped to
 *    [minReplicas, maxReplicas]; below the activation threshold an idle workspace recommends 0
 *    pods (KEDA's `activationTargetValue`);
 * 2. stabilization: scaling up takes the LOWEST recommendation of the scale-up window (0 s by
 *    default: at once), scaling down the HIGHEST of the scale-down window, so a short lull between
 *    study phases sheds nothing;
 * 3. rate limits: at most `podsPerPeriod` pods added (removed) within any `periodSeconds`.
 *
 * The floor. Pods never drop below `busyPods`: the busy count is part of the recommendation (on a
 * cluster: a second KEDA trigger with target 1 pod per busy pod; the HPA takes the larger of its
 * metrics), and the result is clamped again after stabilization. Which pods go is the other half:
 * the ReplicaSet deletes the pods with the lowest `controller.kubernetes.io/pod-deletion-cost`
 * first, and `dask_workspace.deletion_cost` keeps that annotation at 0 for idle pods and high for
 * busy ones; locally the emulation removes idle pods first. A pod removed anyway (a node drain)
 * still retires its workers first (the preStop hook), so its results move instead of being lost.
 */

/** HPA-style limits for one direction. */
export interface ScalingDirection {
  /** Seconds of recommendations considered (up: the lowest wins; down: the highest wins). */
  stabilizationWindowSeconds: number;
  /** At most this many pods added (up) or removed (down) within `periodSeconds`. */
  podsPerPeriod: number;
  /** The rate limit's period, seconds. */
  periodSeconds: number;
}

/** Everything the decision needs from the stack config (dask mode). */
export interface ScalingPolicy {
  minReplicas: number;
  maxReplicas: number;
  /** `workers.nprocs`: Dask worker processes per pod. */
  processesPerPod: number;
  /** An idle workspace (0 pods) starts a pod only when desired processes exceed this. */
  activationProcesses: number;
  scaleUp: ScalingDirection;
  scaleDown: ScalingDirection;
}

/** One look at the workspace. */
export interface ScalingObservation {
  /** Monotonic time, seconds. */
  atSeconds: number;
  /** Pods that exist now (the Deployment's replicas). */
  currentPods: number;
  /** The scheduler's desired worker processes (`dask_scheduler_desired_workers`). */
  desiredProcesses: number;
  /** Pods whose workers hold results or run tasks. */
  busyPods: number;
}

/** What earlier decisions left behind (immutable; pass the returned one to the next call). */
export interface ScalingState {
  /** Recent recommendations, oldest first. */
  readonly recommendations: ReadonlyArray<{ atSeconds: number; pods: number }>;
  /** Recent changes of the pod count (+ added, − removed), oldest first. */
  readonly changes: ReadonlyArray<{ atSeconds: number; delta: number }>;
}

export const INITIAL_SCALING_STATE: ScalingState = { recommendations: [], changes: [] };

export interface ScalingDecision {
  /** Pods to run now. */
  pods: number;
  /** The recommendation before stabilization and rate limits. */
  recommendation: number;
  /** Pods the metric alone asks for: ⌈desiredProcesses ÷ processesPerPod⌉. */
  metricPods: number;
  /** Why `pods` differs from the recommendation, or "" when it does not. */
  limitedBy: "" | "scale-up window" | "scale-down window" | "scale-up rate" | "scale-down rate";
  state: ScalingState;
}

/** ⌈desired processes ÷ processes per pod⌉: how the scheduler's metric becomes pods. */
export function podsForProcesses(desiredProcesses: number, processesPerPod: number): number {
  if (!Number.isFinite(desiredProcesses) || desiredProcesses <= 0) return 0;
  return Math.ceil(desiredProcesses / processesPerPod);
}

/** The recommendation of one observation (step 1), before stabilization and rate limits. */
export function recommendPods(policy: ScalingPolicy, obs: ScalingObservation): number {
  const metricPods = podsForProcesses(obs.desiredProcesses, policy.processesPerPod);
  const busy = Math.max(0, Math.floor(obs.busyPods));
  const idle =
    obs.currentPods === 0 && busy === 0 && !(obs.desiredProcesses > policy.activationProcesses);
  const wanted = idle ? 0 : Math.max(metricPods, busy);
  return Math.min(policy.maxReplicas, Math.max(policy.minReplicas, wanted));
}

/**
 * The number of pods to run now. Pure: the same observation and state give the same decision.
 * @throws RangeError on a policy that validation would have rejected (min > max, nprocs < 1).
 */
export function decideScale(
  policy: ScalingPolicy,
  obs: ScalingObservation,
  state: ScalingState = INITIAL_SCALING_STATE,
): ScalingDecision {
  if (policy.processesPerPod < 1 || policy.minReplicas > policy.maxReplicas) {
    throw new RangeError(
      `invalid scaling policy: processesPerPod ${policy.processesPerPod}, replicas ${policy.minReplicas}..${policy.maxReplicas}`,
    );
  }
  const now = obs.atSeconds;
  const current = obs.currentPods;
  const recommendation = recommendPods(policy, obs);
  const metricPods = podsForProcesses(obs.desiredProcesses, policy.processesPerPod);

  // Keep what any window or period may still need.
  const keep = Math.max(
    policy.scaleUp.stabilizationWindowSeconds,
    policy.scaleDown.stabilizationWindowSeconds,
  );
  const recommendations = [
    ...state.recommendations.filter((r) => r.atSeconds > now - keep),
    { atSeconds: now, pods: recommendation },
  ];

  // Stabilization: up to the lowest recommendation of the up window, down to the highest of the
  // down window (the current one always counts).
  const inWindow = (w: number) =>
    recommendations.filter((r) => r.atSeconds > now - w || r.atSeconds === now).map((r) => r.pods);
  const upTo = Math.min(...inWindow(policy.scaleUp.stabilizationWindowSeconds));
  const downTo = Math.max(...inWindow(policy.scaleDown.stabilizationWindowSeconds));
  let pods = current;
  let limitedBy: ScalingDecision["limitedBy"] = "";
  if (pods < upTo) pods = upTo;
  if (pods > downTo) pods = downTo;
  if (recommendation > current && pods < recommendation) limitedBy = "scale-up window";
  if (recommendation < current && pods > recommendation) limitedBy = "scale-down window";

  // Rate limits over the last period.
  const changedWithin = (period: number, sign: 1 | -1) =>
    state.changes
      .filter((c) => c.atSeconds > now - period && Math.sign(c.delta) === sign)
      .reduce((sum, c) => sum + Math.abs(c.delta), 0);
  if (pods > current) {
    const allowed = Math.max(
      0,
      policy.scaleUp.podsPerPeriod - changedWithin(policy.scaleUp.periodSeconds, 1),
    );
    if (pods - current > allowed) {
      pods = current + allowed;
      limitedBy = "scale-up rate";
    }
  } else if (pods < current) {
    const allowed = Math.max(
      0,
      policy.scaleDown.podsPerPeriod - changedWithin(policy.scaleDown.periodSeconds, -1),
    );
    if (current - pods > allowed) {
      pods = current - allowed;
      limitedBy = "scale-down rate";
    }
  }

  // The floor, once more after every other rule: never below the busy pods that exist.
  pods = Math.max(pods, Math.min(current, Math.floor(obs.busyPods)));
  pods = Math.min(policy.maxReplicas, Math.max(policy.minReplicas, pods));

  const keepChanges = Math.max(policy.scaleUp.periodSeconds, policy.scaleDown.periodSeconds);
  const changes = [
    ...state.changes.filter((c) => c.atSeconds > now - keepChanges),
    ...(pods !== current ? [{ atSeconds: now, delta: pods - current }] : []),
  ];
  return { pods, recommendation, metricPods, limitedBy, state: { recommendations, changes } };
}

/** `autoscaling/v2` HPA behaviour from the same policy (KEDA copies it into the HPA it creates). */
export function hpaBehavior(policy: Pick<ScalingPolicy, "scaleUp" | "scaleDown">): {
  scaleUp: HpaRules;
  scaleDown: HpaRules;
} {
  const rules = (d: ScalingDirection, select: "Max" | "Min"): HpaRules => ({
    stabilizationWindowSeconds: d.stabilizationWindowSeconds,
    selectPolicy: select,
    policies: [{ type: "Pods", value: d.podsPerPeriod, periodSeconds: d.periodSeconds }],
  });
  return { scaleUp: rules(policy.scaleUp, "Max"), scaleDown: rules(policy.scaleDown, "Min") };
}

export interface HpaRules {
  stabilizationWindowSeconds: number;
  selectPolicy: "Max" | "Min";
  policies: Array<{ type: "Pods"; value: number; periodSeconds: number }>;
}

/**
 * The KEDA trigger targets: `AverageValue` targets, so the HPA computes ⌈metric ÷ target⌉ pods,
 * which for the scheduler's desired processes is ⌈processes ÷ nprocs⌉ ({@link podsForProcesses}),
 * and for the busy pods exactly their number.
 */
export function kedaTarget(
  policy: Pick<ScalingPolicy, "processesPerPod" | "activationProcesses">,
): {
  desiredWorkers: { targetValue: number; activationTargetValue: number };
  busyPods: { targetValue: number; activationTargetValue: number };
} {
  return {
    desiredWorkers: {
      targetValue: policy.processesPerPod,
      activationTargetValue: policy.activationProcesses,
    },
    busyPods: { targetValue: 1, activationTargetValue: 0 },
  };
}
