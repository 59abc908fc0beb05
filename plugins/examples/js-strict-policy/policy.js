// strict-policy: a rollgate failure policy in JavaScript. Rolls back as soon as any deciding
// metric has a failed measurement, even before its failureLimit is reached.

const schema = {
  $schema: "https://json-schema.org/draft/2020-12/schema",
  title: "Config",
  type: "object",
  properties: {
    maxFailures: { type: "integer", minimum: 0, description: "Failed measurements allowed per metric (default 0)." },
  },
  additionalProperties: false,
};

function parse(config) {
  const problems = [];
  let value;
  try {
    value = JSON.parse(config);
  } catch (e) {
    return { problems: [{ path: "", message: `not valid JSON: ${e.message}` }] };
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return { problems: [{ path: "", message: "must be a JSON object" }] };
  }
  for (const key of Object.keys(value)) {
    if (key !== "maxFailures") problems.push({ path: `/${key}`, message: "unknown field; expected maxFailures" });
  }
  const maxFailures = value.maxFailures ?? 0;
  if (!Number.isInteger(maxFailures) || maxFailures < 0) {
    problems.push({ path: "/maxFailures", message: "must be a whole number, 0 or more" });
  }
  return { problems, maxFailures };
}

export const policy = {
  info() {
    return {
      name: "strict-policy",
      version: "0.1.0",
      description: "Rolls back at the first failed measurement of a deciding metric.",
      configSchema: JSON.stringify(schema),
    };
  },
  validate(config) {
    const { problems } = parse(config);
    // An error result is thrown: jco turns the thrown value into result::err.
    if (problems.length > 0) throw problems;
  },
  decide(config, input) {
    const { problems, maxFailures } = parse(config);
    if (problems.length > 0) throw problems.map((p) => `${p.path}: ${p.message}`).join("; ");
    for (const m of input.metrics) {
      if (m.dryRun) continue;
      if (m.failures > maxFailures || m.status === "failed" || m.status === "error") {
        return { tag: "rollback", val: `metric ${JSON.stringify(m.name)}: ${m.failures} failed measurement(s) > ${maxFailures} (${m.message})` };
      }
    }
    return { tag: "continue" };
  },
};
