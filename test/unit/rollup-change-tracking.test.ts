// What rollup-hourly and adoption do about the two change triggers, from their state on the source.
import { describe, expect, it } from "vitest";
import { planChangeTriggers } from "../../shared/rollups/change-tracking.ts";
import type { TriggerState } from "../../shared/rollups/changes.ts";

const DELETE = "telemetry_jobs_rollup_delete";
const UPDATE = "telemetry_jobs_rollup_update";
const plan = (del: TriggerState, upd: TriggerState) => {
  const { todo, disabled } = planChangeTriggers(
    new Map([
      [DELETE, del],
      [UPDATE, upd],
    ]),
  );
  return { todo: todo.map((t) => t.name), disabled: disabled.map((t) => t.name) };
};

describe("planChangeTriggers", () => {
  it("leaves triggers in place as they are", () => {
    expect(plan("ok", "ok")).toEqual({ todo: [], disabled: [] });
  });

  it("creates missing triggers and corrects those defined otherwise", () => {
    expect(plan("missing", "missing")).toEqual({ todo: [DELETE, UPDATE], disabled: [] });
    expect(plan("ok", "different")).toEqual({ todo: [UPDATE], disabled: [] });
  });

  it("never enables a trigger an operator disabled, and still does the rest", () => {
    expect(plan("disabled", "ok")).toEqual({ todo: [], disabled: [DELETE] });
    expect(plan("disabled", "missing")).toEqual({ todo: [UPDATE], disabled: [DELETE] });
  });
});
