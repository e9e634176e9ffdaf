/** Kubernetes label selectors (matchLabels AND matchExpressions). */
import type { LabelSelector } from '../k8s/objects.js';

export type Labels = Readonly<Record<string, string>>;

/** The label every namespace carries (set by the API server since Kubernetes 1.21). */
export const NAMESPACE_NAME_LABEL = 'kubernetes.io/metadata.name';

/** Whether `labels` satisfy `sel`. An empty selector ({}) selects everything. */
export function matchesSelector(sel: LabelSelector, labels: Labels): boolean {
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const r of sel.matchExpressions ?? []) {
    const has = Object.prototype.hasOwnProperty.call(labels, r.key);
    const values = r.values ?? [];
    switch (r.operator) {
      case 'In':
        if (!has || !values.includes(labels[r.key]!)) return false;
        break;
      case 'NotIn':
        if (has && values.includes(labels[r.key]!)) return false;
        break;
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
      default:
        return false;
    }
  }
  return true;
}

/** Problems with a selector that the API server would have rejected. */
export function selectorProblems(sel: LabelSelector, where: string): string[] {
  const out: string[] = [];
  for (const r of sel.matchExpressions ?? []) {
    if (!['In', 'NotIn', 'Exists', 'DoesNotExist'].includes(r.operator)) out.push(`${where}: unknown operator '${r.operator}'`);
    else if ((r.operator === 'In' || r.operator === 'NotIn') && (r.values ?? []).length === 0) out.push(`${where}: ${r.operator} needs values`);
    else if ((r.operator === 'Exists' || r.operator === 'DoesNotExist') && (r.values ?? []).length > 0) out.push(`${where}: ${r.operator} takes no values`);
  }
  return out;
}

/** Canonical text of a label set: sorted 'k=v' joined by ','. */
export function labelsText(labels: Labels): string {
  return Object.keys(labels)
    .sort()
    .map((k) => `${k}=${labels[k]}`)
    .join(',');
}
