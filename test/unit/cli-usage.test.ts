// How a usage or configuration error reads on a terminal, and which log format a run gets.
import { describe, expect, it } from "vitest";
import { COMMON_FLAGS, parseCommandArgs, type UsageError, usageOf } from "../../jobs/commands/args.ts";
import { logFormat, readableConfigError } from "../../jobs/process.ts";
import { ConfigError } from "../../shared/config/errors.ts";

const HELP = `Usage: telemetry-jobs demo [--table NAME]

Does a demo.

Options: ...`;

function usageError(argv: string[], help?: string): UsageError {
  try {
    parseCommandArgs("demo", argv, COMMON_FLAGS, false, help);
  } catch (error) {
    return error as UsageError;
  }
  throw new Error("parsed");
}

describe("usage errors", () => {
  it("an unknown flag: a ConfigError (exit 2) that knows the command's usage lines", () => {
    const error = usageError(["--bogus"], HELP);
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.exitCode).toBe(2);
    expect(error.message).toBe("demo: Unknown option '--bogus'. See `telemetry-jobs demo --help`.");
    expect(readableConfigError("demo", error)).toBe(
      "telemetry-jobs demo: Unknown option '--bogus'\n" +
        "Usage: telemetry-jobs demo [--table NAME]\n" +
        "Run `telemetry-jobs demo --help` for the options.\n",
    );
  });

  it("without a help text: the problem and the pointer to --help", () => {
    expect(readableConfigError("demo", usageError(["--now"]))).toMatch(
      /^telemetry-jobs demo: Option '--now <value>' argument missing\nRun `telemetry-jobs demo --help` for the options\.\n$/,
    );
  });

  it("a configuration error reads as one plain message, no timestamp or fields", () => {
    expect(readableConfigError("retention", new ConfigError("invalid policy in x:\n  - tables: bad"))).toBe(
      "telemetry-jobs retention: invalid policy in x:\n  - tables: bad\n",
    );
  });

  it("usageOf keeps the lines before the first blank line", () => {
    expect(usageOf(HELP)).toBe("Usage: telemetry-jobs demo [--table NAME]");
    expect(usageOf("Usage:\n  a\n  b\n\nmore")).toBe("Usage:\n  a\n  b");
  });
});

describe("logFormat", () => {
  it("text on a terminal, JSON with --json or when stdout is not a terminal", () => {
    expect(logFormat([], { isTTY: true })).toBe("text");
    expect(logFormat(["--json"], { isTTY: true })).toBe("json");
    expect(logFormat([], { isTTY: false })).toBe("json");
    expect(logFormat([], {})).toBe("json");
  });

  it("--log-format forces either, wherever the output goes", () => {
    expect(logFormat(["--log-format", "text"], { isTTY: false })).toBe("text");
    expect(logFormat(["--log-format=text"], { isTTY: false })).toBe("text");
    expect(logFormat(["--log-format", "json"], { isTTY: true })).toBe("json");
    expect(logFormat(["--json", "--log-format", "text"], { isTTY: false })).toBe("text");
    // Before or after --json: the explicit format wins either way.
    expect(logFormat(["--log-format", "text", "--json"], { isTTY: false })).toBe("text");
    // An unknown value decides nothing here: the command's parse refuses it.
    expect(logFormat(["--log-format", "xml"], { isTTY: true })).toBe("text");
  });

  it("an unknown --log-format is a usage error that echoes it", () => {
    const error = usageError(["--log-format", "xml"], HELP);
    expect(error.problem).toBe('--log-format must be text or json, not "xml"');
    expect(error.usage).toBe("Usage: telemetry-jobs demo [--table NAME]");
  });
});
