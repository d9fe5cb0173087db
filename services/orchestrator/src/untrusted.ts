// Untrusted data (tool output, web content, recalled memory) reaches the model
// only inside <untrusted ...> blocks, never in the system role. Whatever the
// data contains cannot close or open a block: every "<" that starts an
// (optionally spaced or slashed) "untrusted" tag is escaped, and attribute values
// are entity-escaped so they cannot break out of their quotes.

const TAG = /<(\s*\/?\s*untrusted)/gi;

/** Escapes content so it cannot contain an <untrusted> or </untrusted> tag. */
export function escapeUntrusted(text: string): string {
  return text.replace(TAG, '&lt;$1');
}

function attr(v: string): string {
  return v
    .replace(/&/g, '&amp;')
    .replace(/"/g, '&quot;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/[\r\n]+/g, ' ');
}

const NAME = /^[a-z][a-z0-9_-]{0,31}$/;

/** One delimited block: <untrusted source="..." k="v"...>content</untrusted>. */
export function untrustedBlock(source: string, content: string, attrs: Record<string, string | number | undefined> = {}): string {
  const parts = [`source="${attr(source)}"`];
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === '' || !NAME.test(k)) continue;
    parts.push(`${k}="${attr(String(v))}"`);
  }
  return `<untrusted ${parts.join(' ')}>\n${escapeUntrusted(content)}\n</untrusted>`;
}
