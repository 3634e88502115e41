/** Figures from the coordinator's Prometheus metrics, for the bench's progress and watch lines. */

/** The coordinator's metrics as Prometheus text. */
export async function coordinatorMetrics(coordinatorUrl: string): Promise<string> {
  return (await fetch(`${coordinatorUrl}/metrics`)).text();
}

/** The sum of every sample of one metric in Prometheus text, optionally only those with a label value; 0 when it has none yet. */
export function metricSum(text: string, name: string, label?: string): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (label && !line.includes(label)) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1)) || 0;
  }
  return sum;
}
