/** The workspace's namespace, with the "restricted" Pod Security Standard enforced. */
import type * as k8s from "@pulumi/kubernetes";
import type { WorkspaceConfig } from "../types.js";
import { MANAGED_BY, PART_OF } from "./labels.js";
import { podSecurityLabels } from "./security.js";

export function workspaceNamespace(cfg: WorkspaceConfig): k8s.types.input.core.v1.Namespace {
  return {
    apiVersion: "v1",
    kind: "Namespace",
    metadata: {
      name: cfg.namespace,
      labels: {
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        ...podSecurityLabels(),
      },
    },
  };
}
