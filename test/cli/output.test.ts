import { describe, expect, it } from "vitest";
import { jsonText, terminal, visible } from "../../src/cli/output.js";

/** Every character a terminal acts on or a line is reordered by (the set output.ts documents). */
const UNSAFE = [
  ...Array.from({ length: 0x20 }, (_, i) => i),
  0x7f,
  ...Array.from({ length: 0x20 }, (_, i) => 0x80 + i),
  0x061c,
  0x200b,
  0x200e,
  0x200f,
  0x2028,
  0x2029,
  0x202a,
  0x202b,
  0x202c,
  0x202d,
  0x202e,
  0x2060,
  0x2066,
  0x2067,
  0x2068,
  0x2069,
  0xfeff,
].map((code) => String.fromCodePoint(code));

describe("visible", () => {
  it("writes every control, separator and bidi character as an escape", () => {
    for (const c of UNSAFE) {
      const shown = visible(`a${c}b`);
      expect(shown, `U+${c.codePointAt(0)?.toString(16)}`).toMatch(
        /^a\\(t|n|r|x[0-9a-f]{2}|u[0-9a-f]{4})b$/,
      );
    }
    expect(visible("x\u001b]0;pwned\u0007\u001b[2J\r\n\t\u007f\u009b")).toBe(
      "x\\x1b]0;pwned\\x07\\x1b[2J\\r\\n\\t\\x7f\\x9b",
    );
    expect(visible("\u202egnp.exe\u2066\u2028")).toBe("\\u202egnp.exe\\u2066\\u2028");
  });

  it("leaves other text as it is, backslashes, joiners and emoji included", () => {
    const text = "Zoë O'Brien C:\\x1b 日本 مرحبا می‌خواهم 👩‍👩‍👧 🏴󠁧󠁢󠁳󠁣󠁴󠁿";
    expect(visible(text)).toBe(text);
    // So it may be applied twice.
    const once = visible("a\u001bb\nc");
    expect(visible(once)).toBe(once);
  });

  it("as a template tag, shows the values and keeps the command's own words", () => {
    const name = "Evil\nkey_fake\u001b[2J";
    expect(terminal`Tenant "${name}" (${42}).\n`).toBe('Tenant "Evil\\nkey_fake\\x1b[2J" (42).\n');
  });
});

describe("jsonText", () => {
  it("is the same JSON value, with nothing a terminal acts on in its text", () => {
    const all = Array.from({ length: 0x3000 }, (_, i) => String.fromCodePoint(i)).join("");
    const value = { text: `${all}\ufeff\\\u009b"\u2028`, list: UNSAFE };
    const text = jsonText(value);
    expect(JSON.parse(text)).toEqual(value);
    for (const c of UNSAFE)
      expect(text.includes(c), `U+${c.codePointAt(0)?.toString(16)}`).toBe(false);
    expect(jsonText({ a: "b\u202ec" })).toBe('{"a":"b\\u202ec"}');
    expect(jsonText({ a: "plain" })).toBe(JSON.stringify({ a: "plain" }));
  });
});
