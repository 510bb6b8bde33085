// Roll call ("điểm danh") counts of the console: every invited site counted exactly once.
// The server gives each site one attendance state (giaoban.conference.live.SiteLive.attendance):
// present (came on time, still here), late (came late, still here), left (came, then left) or
// absent (never came). The counts are a partition of the invited sites: they add up to the total.

export const ROLL_KINDS = ["present", "late", "absent", "left"];

/** {present, late, absent, left, here, invited} for the sites of ``order`` (the invited sites). */
export function rollCall(order, site) {
  const counts = { present: 0, late: 0, absent: 0, left: 0 };
  for (const id of order) {
    const kind = site(id)?.attendance;
    counts[ROLL_KINDS.includes(kind) ? kind : "absent"] += 1;
  }
  return { ...counts, here: counts.present + counts.late, invited: order.length };
}
