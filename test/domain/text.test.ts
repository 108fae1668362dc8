import { describe, expect, it } from "vitest";
import { codePoint, freeTextProblem, lineProblem } from "../../src/domain/text.js";

const chr = (code: number) => String.fromCodePoint(code);
const range = (from: number, to: number) =>
  Array.from({ length: to - from + 1 }, (_, i) => from + i);

/** Every character a name may not hold, as the rule's documentation lists them. */
const REFUSED = [
  ...range(0x00, 0x1f), // C0 controls
  0x7f, // DEL
  ...range(0x80, 0x9f), // C1 controls
  0x2028, // line separator
  0x2029, // paragraph separator
  ...range(0x202a, 0x202e), // bidi embeddings, pop, overrides
  ...range(0x2066, 0x2069), // bidi isolates, pop
];

/** The neighbours of each refused range, and text of other scripts: all allowed. */
const ALLOWED = [
  "\u0020",
  "\u007e",
  "\u00a0",
  "\u2027",
  "\u202f",
  "\u2065",
  "\u206a",
  "Zoë Ångström-Ñúñez",
  "Ærøskøbing café",
  "日本語の会議室",
  "مرحبا می‌خواهم",
  "שלום",
  "👩‍👩‍👧 Family room 🏴󠁧󠁢󠁳󠁣󠁴󠁿",
  // Bidi marks (not overrides) and joiners are part of ordinary text.
  "\u200e\u200f\u061c\u200c\u200d",
  "C:\\x1b is four characters",
];

describe("lineProblem: names, titles, labels", () => {
  it("refuses every control, separator and bidi override, naming it by code point", () => {
    for (const code of REFUSED) {
      const problem = lineProblem(`Room ${chr(code)} 1`);
      expect(problem, codePoint(chr(code))).toContain(
        `must not contain U+${code.toString(16).toUpperCase().padStart(4, "0")} `,
      );
    }
    expect(REFUSED).toHaveLength(32 + 1 + 32 + 2 + 5 + 4);
  });

  it("allows the characters either side of each range, accented letters, scripts and emoji", () => {
    for (const text of ALLOWED) expect(lineProblem(text), JSON.stringify(text)).toBeUndefined();
  });

  it("checks the whole Basic Multilingual Plane against the list", () => {
    const refused = new Set(REFUSED);
    const wrong: string[] = [];
    for (let code = 0; code <= 0xffff; code++) {
      if (code >= 0xd800 && code <= 0xdfff) continue; // lone surrogates are not text
      if ((lineProblem(chr(code)) !== undefined) !== refused.has(code)) {
        wrong.push(codePoint(chr(code)));
      }
    }
    expect(wrong).toEqual([]);
  });

  it("names the first such character, ESC in an escape sequence", () => {
    expect(lineProblem("Room \u001b[31mred\u0007")).toBe(
      "must not contain U+001B (no control, line break or bidi override characters)",
    );
    expect(lineProblem("invoice\u202egnp.exe")).toContain("U+202E");
  });
});

describe("freeTextProblem: descriptions and reasons", () => {
  it("allows tabs and line breaks, and everything a name may hold", () => {
    expect(freeTextProblem("first line\r\nsecond\tcolumn\nthird\r")).toBeUndefined();
    for (const text of ALLOWED) expect(freeTextProblem(text), JSON.stringify(text)).toBeUndefined();
  });

  it("refuses every other character a name may not hold", () => {
    for (const code of REFUSED.filter((c) => c !== 0x09 && c !== 0x0a && c !== 0x0d)) {
      expect(freeTextProblem(`a\n${chr(code)}`), codePoint(chr(code))).toContain(
        codePoint(chr(code)),
      );
    }
    expect(freeTextProblem("line\n\u001b[2J")).toBe(
      "must not contain U+001B (no control or bidi override characters; tabs and line breaks are allowed)",
    );
  });
});
