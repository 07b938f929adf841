/**
 * A strict little XML well-formedness checker for the tests (no dependency):
 * one root element, balanced tags, quoted attributes without '<', no
 * duplicate attributes, only the five predefined entities or character
 * references. Returns the element names in document order; throws otherwise.
 */
export function parseXml(text: string): string[] {
  let s = text.replace(/^\uFEFF/, "");
  s = s.replace(/^<\?xml\s[^?]*\?>/, "");
  const names: string[] = [];
  const stack: string[] = [];
  let roots = 0;
  let i = 0;
  const badEntity = /&(?!(?:amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);)/;
  while (i < s.length) {
    if (s.startsWith("<!--", i)) {
      const end = s.indexOf("-->", i + 4);
      if (end < 0) throw new Error(`unterminated comment at ${i}`);
      i = end + 3;
      continue;
    }
    if (s[i] === "<") {
      const end = s.indexOf(">", i);
      if (end < 0) throw new Error(`unterminated tag at ${i}`);
      const tag = s.slice(i + 1, end);
      i = end + 1;
      if (tag.startsWith("/")) {
        const name = tag.slice(1).trim();
        const open = stack.pop();
        if (open !== name) throw new Error(`</${name}> closes <${open ?? "nothing"}>`);
        continue;
      }
      const selfClose = tag.endsWith("/");
      const body = selfClose ? tag.slice(0, -1) : tag;
      const m = /^([A-Za-z_][\w:.-]*)([\s\S]*)$/.exec(body);
      if (!m) throw new Error(`bad tag <${tag}>`);
      const name = m[1]!;
      let attrs = m[2]!;
      const seen = new Set<string>();
      const attrRe = /^\s+([A-Za-z_][\w:.-]*)\s*=\s*("([^"<]*)"|'([^'<]*)')/;
      for (;;) {
        const a = attrRe.exec(attrs);
        if (!a) break;
        if (seen.has(a[1]!)) throw new Error(`duplicate attribute ${a[1]} in <${name}>`);
        seen.add(a[1]!);
        const v = a[3] ?? a[4] ?? "";
        if (badEntity.test(v)) throw new Error(`bad entity in attribute ${a[1]} of <${name}>`);
        attrs = attrs.slice(a[0].length);
      }
      if (attrs.trim() !== "") throw new Error(`bad attributes in <${tag}>: "${attrs.trim()}"`);
      if (stack.length === 0) {
        roots++;
        if (roots > 1) throw new Error("more than one root element");
      }
      names.push(name);
      if (!selfClose) stack.push(name);
      continue;
    }
    const next = s.indexOf("<", i);
    const textEnd = next < 0 ? s.length : next;
    const t = s.slice(i, textEnd);
    if (stack.length === 0 && t.trim() !== "")
      throw new Error(`text outside the root element: "${t.trim()}"`);
    if (badEntity.test(t)) throw new Error(`bad entity in text "${t}"`);
    if (t.includes(">") && stack.length === 0) throw new Error("stray '>'");
    i = textEnd;
  }
  if (stack.length > 0) throw new Error(`unclosed <${stack[stack.length - 1]}>`);
  if (roots !== 1) throw new Error("no root element");
  return names;
}
