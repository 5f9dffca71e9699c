// JSON Schema of the policy file, for editors ("$schema": ".../policy.schema.json") and for
// reviewing Terraform-rendered policies. Generated from the zod schema, so they cannot disagree.
import { z } from "zod";
import { PolicyFileSchema } from "./policy.ts";

export function policyJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(PolicyFileSchema, { io: "input", unrepresentable: "any" }) as Record<
    string,
    unknown
  >;
  return {
    ...schema,
    title: "telemetry-jobs policy file",
    description: "Which tables telemetry-jobs manages, and how. See README.md, section 'Policy file'.",
  };
}
