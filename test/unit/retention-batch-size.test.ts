// How the row-delete batch size follows the time each batch took.
import { describe, expect, it } from "vitest";
import { blocksWithinDeleteCost, lowestMsPerRow, nextBatchSize } from "../../shared/retention/batch-size.ts";

describe("nextBatchSize", () => {
  it("scales toward the target: a batch that took twice the target halves", () => {
    expect(nextBatchSize(400, 300, 150)).toBe(200);
    expect(nextBatchSize(400, 1_500, 150)).toBe(40);
  });
  it("grows by at most half again, however fast the batch was", () => {
    expect(nextBatchSize(400, 75, 150)).toBe(600);
    expect(nextBatchSize(400, 1, 150)).toBe(600);
    expect(nextBatchSize(400, 0, 150)).toBe(600);
  });
  it("never below one block", () => {
    expect(nextBatchSize(3, 10_000, 150)).toBe(1);
    expect(nextBatchSize(1, 10_000, 0.001)).toBe(1);
  });
  it("grows from one block", () => {
    expect(nextBatchSize(1, 1, 150)).toBe(2);
  });
});

describe("blocksWithinDeleteCost", () => {
  it("at the lowest cost per deleted row seen: as many blocks as, all expired, would fit in the target", () => {
    // 0.01 ms a row, 60 rows a block: 100 ms deletes 10,000 rows, 166 full blocks.
    expect(blocksWithinDeleteCost(100, 60, 0.01, 80)).toBe(166);
    expect(blocksWithinDeleteCost(100, 60, 10, 80)).toBe(1);
  });
  it("before any row is deleted: four first batches at most", () => {
    expect(blocksWithinDeleteCost(100, 60, undefined, 80)).toBe(320);
  });
});

describe("lowestMsPerRow", () => {
  it("keeps the lowest cost per deleted row; a batch that deleted nothing says nothing", () => {
    expect(lowestMsPerRow(undefined, 50, 0)).toBeUndefined();
    expect(lowestMsPerRow(undefined, 50, 5_000)).toBe(0.01);
    expect(lowestMsPerRow(0.01, 50, 10)).toBe(0.01); // sparse: mostly scanning
    expect(lowestMsPerRow(0.01, 20, 5_000)).toBe(0.004);
  });
});

describe("a stretch of blocks with nothing to delete, then dense expired blocks", () => {
  it("the batch that meets them is no larger than the delete cost allows, though the cheap ones grew", () => {
    // First batch: 80 blocks, 5,000 rows deleted in 50 ms (0.01 ms a row, 60 rows a block); then
    // twenty batches of 5 ms each with nothing to delete.
    const target = 100;
    let size = 80;
    let msPerRow = lowestMsPerRow(undefined, 50, 5_000);
    size = nextBatchSize(size, 50, target, blocksWithinDeleteCost(target, 60, msPerRow, 80));
    for (let i = 0; i < 20; i++) {
      msPerRow = lowestMsPerRow(msPerRow, 5, 0);
      size = nextBatchSize(size, 5, target, blocksWithinDeleteCost(target, 60, msPerRow, 80));
    }
    // Scaling by time alone would have grown it to 80 x 1.5^20 blocks; all expired, those would
    // take far beyond the target. Bounded: 166 blocks, about 100 ms of deleting.
    expect(size).toBe(166);
    expect(size * 60 * 0.01).toBeLessThanOrEqual(target);
  });
  it("with no row deleted yet, the cheap batches grow to four first batches, no further", () => {
    let size = 80;
    for (let i = 0; i < 20; i++)
      size = nextBatchSize(size, 1, 100, blocksWithinDeleteCost(100, 60, undefined, 80));
    expect(size).toBe(320);
  });
});
