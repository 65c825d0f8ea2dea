/**
 * The DaskWorkspace component: every Kubernetes object of a Dask workspace, from one validated
 * `WorkspaceConfig`. The constructor only wires objects together; each object is built by a pure
 * function in this folder (one file per domain), tested without Pulumi.
 */
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { schedulerAddress as formatSchedulerAddress } from "../dask.js";
import type { WorkspaceConfig } from "../types.js";
import { workerAutoscaler } from "./autoscaling.js";
import { createDaskAutoscaling } from "./dask-autoscaling.js";
import { daskConfigMap } from "./daskconfig.js";
import { usesKeda } from "./keda.js";
import { jobNames, workspaceNames } from "./labels.js";
import { workspaceNamespace } from "./namespace.js";
import { networkPolicies } from "./network.js";
import type { NodePlacement } from "./placement.js";
import {
  needsResultsVolume,
  resultsClaim,
  runnerJob,
  runnerRole,
  runnerRoleBinding,
  runnerServiceAccount,
  studyConfigMap,
} from "./runner.js";
import {
  schedulerDeployment,
  schedulerDisruptionBudget,
  schedulerService,
  workspaceSchedulerAddress,
} from "./scheduler.js";
import { workspaceTlsSecret } from "./tls-secret.js";
import { workerDeployment } from "./workers.js";

export type { NodePlacement } from "./placement.js";

/** The Pulumi type token of the component. Part of every child's URN: never change it. */
export const DASK_WORKSPACE_TYPE = "dask-workspace:workspace:DaskWorkspace";

export interface DaskWorkspaceArgs {
  /** The validated, defaults-resolved workspace configuration (`loadConfig()` in `infra/config.ts`). */
  config: WorkspaceConfig;
  /**
   * The Kubernetes provider for every object. Absent: Pulumi's default provider (the current
   * kubeconfig context). Target `azure` passes the provider built from the AKS credentials.
   */
  provider?: k8s.Provider;
  /**
   * Where pods may run, per component. Absent: anywhere. Target `azure` pins workers and runner
   * Jobs to the worker pool (node selector, and the spot taint's toleration when `spot`).
   */
  nodePlacement?: {
    scheduler?: NodePlacement;
    workers?: NodePlacement;
    jobs?: NodePlacement;
  };
  /**
   * Annotations on the runner ServiceAccount, e.g. `azure.workload.identity/client-id` (may be an
   * Output of the identity). Default: none.
   */
  runnerServiceAccountAnnotations?: Record<string, pulumi.Input<string>>;
  /** Extra labels on runner Job pods, e.g. `azure.workload.identity/use: "true"`. Default: none. */
  jobPodLabels?: Record<string, string>;
  /**
   * Container images as Inputs, replacing `config.images.dask`/`runner` in the pod specs (labels
   * keep the config's tag). Target `azure` passes the names in the stack's registry, whose login
   * server is known only once the registry exists. Default: the config's images.
   */
  images?: { dask?: pulumi.Input<string>; runner?: pulumi.Input<string> };
  /**
   * Extra environment variables of the runner Job container, e.g. `AZURE_STORAGE_ACCOUNT_NAME`
   * for `az://` results. Default: none.
   */
  runnerEnv?: Record<string, pulumi.Input<string>>;
}

export class DaskWorkspace extends pulumi.ComponentResource {
  /** The namespace every object lives in. */
  public readonly namespace: pulumi.Output<string>;
  /**
   * `tcp://<scheduler-service>.<namespace>.svc:<port>` (`tls://` with `tls.enabled`), for
   * workers, runners and `Client(...)`.
   */
  public readonly schedulerAddress: pulumi.Output<string>;
  /** The scheduler's dashboard (HTTP) port on its Service. */
  public readonly dashboardPort: pulumi.Output<number>;

  constructor(name: string, args: DaskWorkspaceArgs, opts?: pulumi.ComponentResourceOptions) {
    super(DASK_WORKSPACE_TYPE, name, {}, opts);
    const cfg = args.config;
    const names = workspaceNames(name);
    const placement = args.nodePlacement ?? {};
    const address = workspaceSchedulerAddress(cfg, names);
    const child: pulumi.CustomResourceOptions = { parent: this, provider: args.provider };

    // Results on the volume outlive the workspace: Kubernetes deletes a namespace's claims with
    // it, so a retained claim needs a retained namespace (`pulumi destroy` then leaves both).
    const retainResults = needsResultsVolume(cfg) && cfg.runner.resultsVolume.retainOnDelete;
    const namespace = new k8s.core.v1.Namespace(`${name}-namespace`, workspaceNamespace(cfg), {
      ...child,
      ...(retainResults ? { retainOnDelete: true } : {}),
    });
    const inNamespace = { ...child, dependsOn: [namespace] };

    const daskConfig = new k8s.core.v1.ConfigMap(
      names.daskConfig,
      daskConfigMap(cfg, { instance: name, name: names.daskConfig }),
      inNamespace,
    );

    // Policies first: pods never run without them.
    const policies = networkPolicies({ cfg, instance: name, names }).map(
      ({ name: policyName, manifest }) =>
        new k8s.networking.v1.NetworkPolicy(policyName, manifest, inNamespace),
    );
    // Dask TLS: the Secret the Dask pods mount (none when tls.enabled is false).
    const tls = workspaceTlsSecret({ cfg, instance: name, names, opts: inNamespace });
    const afterPolicies = { ...child, dependsOn: [namespace, daskConfig, ...policies, ...tls] };

    const schedulerCtx = {
      cfg,
      instance: name,
      names,
      placement: placement.scheduler,
      image: args.images?.dask,
    };
    const scheduler = new k8s.apps.v1.Deployment(
      names.scheduler,
      schedulerDeployment(schedulerCtx),
      afterPolicies,
    );
    const service = new k8s.core.v1.Service(
      names.scheduler,
      schedulerService(schedulerCtx),
      inNamespace,
    );
    // `scheduler.disruptionBudget: false` (maintenance): no budget, drains may evict the scheduler.
    if (cfg.hardening.disruptionBudget) {
      new k8s.policy.v1.PodDisruptionBudget(
        names.scheduler,
        schedulerDisruptionBudget(schedulerCtx),
        inNamespace,
      );
    }

    const workers = new k8s.apps.v1.Deployment(
      names.worker,
      workerDeployment({
        cfg,
        instance: name,
        names,
        schedulerAddress: address,
        placement: placement.workers,
        image: args.images?.dask,
      }),
      afterPolicies,
    );
    // A CPU HPA (mode cpu) or a KEDA ScaledObject (mode dask), never both on one Deployment.
    if (cfg.autoscaling.enabled && !usesKeda(cfg)) {
      new k8s.autoscaling.v2.HorizontalPodAutoscaler(
        names.autoscaler,
        workerAutoscaler({ cfg, instance: name, names }),
        { ...child, dependsOn: [workers] },
      );
    }

    createDaskAutoscaling({
      cfg,
      instance: name,
      names,
      child,
      dependsOn: [namespace, workers],
      runnerImage: args.images?.runner,
      placement: placement.scheduler,
    });

    const runnerCtx = {
      cfg,
      instance: name,
      names,
      schedulerAddress: address,
      placement: placement.jobs,
      serviceAccountAnnotations: args.runnerServiceAccountAnnotations,
      jobPodLabels: args.jobPodLabels,
      image: args.images?.runner,
      env: args.runnerEnv,
    };
    const serviceAccount = new k8s.core.v1.ServiceAccount(
      names.runner,
      runnerServiceAccount(runnerCtx),
      inNamespace,
    );
    const role = new k8s.rbac.v1.Role(names.runner, runnerRole(runnerCtx), inNamespace);
    const binding = new k8s.rbac.v1.RoleBinding(names.runner, runnerRoleBinding(runnerCtx), {
      ...child,
      dependsOn: [role, serviceAccount],
    });

    const claim = needsResultsVolume(cfg)
      ? new k8s.core.v1.PersistentVolumeClaim(names.results, resultsClaim(runnerCtx), {
          ...inNamespace,
          ...(retainResults ? { retainOnDelete: true } : {}),
        })
      : undefined;

    for (const job of cfg.jobs) {
      const jobName = jobNames(name, job.name);
      const study = new k8s.core.v1.ConfigMap(
        jobName.study,
        studyConfigMap(runnerCtx, job),
        inNamespace,
      );
      // A Job started before the scheduler is ready would spend its backoff on connection errors.
      new k8s.batch.v1.Job(jobName.job, runnerJob(runnerCtx, job), {
        ...child,
        dependsOn: [
          ...afterPolicies.dependsOn,
          study,
          binding,
          scheduler,
          service,
          ...(claim !== undefined ? [claim] : []),
        ],
      });
    }

    this.namespace = namespace.metadata.name;
    this.schedulerAddress = pulumi
      .all([service.metadata.name, namespace.metadata.name])
      .apply(([svc, ns]) => formatSchedulerAddress(cfg, `${svc}.${ns}.svc`));
    this.dashboardPort = pulumi.output(cfg.scheduler.dashboardPort);
    this.registerOutputs({
      namespace: this.namespace,
      schedulerAddress: this.schedulerAddress,
      dashboardPort: this.dashboardPort,
    });
  }
}
