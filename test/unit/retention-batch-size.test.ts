// How the row-delete batch size follows the time each batch took.
import { describe, expect, it } from "vitest";
import { nextBatchBlocks } from "../../shared/retention/delete-rows.ts";

describe("nextBatchBlocks", () => {
  it("scales toward the target: a batch that took twice the target halves", () => {
    expect(nextBatchBlocks(400, 300, 150)).toBe(200);
    expect(nextBatchBlocks(400, 1_500, 150)).toBe(40);
  });
  it("grows by at most half again, however fast the batch was", () => {
    expect(nextBatchBlocks(400, 75, 150)).toBe(600);
    expect(nextBatchBlocks(400, 1, 150)).toBe(600);
    expect(nextBatchBlocks(400, 0, 150)).toBe(600);
  });
  it("never below one block", () => {
    expect(nextBatchBlocks(3, 10_000, 150)).toBe(1);
    expect(nextBatchBlocks(1, 10_000, 0.001)).toBe(1);
  });
  it("grows from one block", () => {
    expect(nextBatchBlocks(1, 1, 150)).toBe(2);
  });
});
