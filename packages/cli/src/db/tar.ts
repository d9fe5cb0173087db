// Reads the tar archives PGlite writes (dumpDataDir: ustar headers, regular files and
// directories), so the database template (./pgdata-template.ts) is unpacked with Node's fs
// instead of through PGlite's WASM file system. No I/O here.

const BLOCK = 512;

export interface TarEntry {
  /** Relative, with no empty, '.' or '..' segment: safe to join below a target directory. */
  path: string;
  type: 'file' | 'dir';
  /** A view into the archive (empty for a directory). */
  data: Buffer;
}

export class TarError extends Error {
  override name = 'TarError';
}

/** A NUL-terminated text field of a header. */
function text(h: Buffer, start: number, len: number): string {
  const f = h.subarray(start, start + len);
  const end = f.indexOf(0);
  return f.toString('utf8', 0, end === -1 ? len : end);
}

function octal(h: Buffer, start: number, len: number, what: string): number {
  const s = text(h, start, len).trim();
  if (!/^[0-7]{1,12}$/.test(s)) throw new TarError(`${what} field ${JSON.stringify(s)} is not an octal number`);
  return parseInt(s, 8);
}

/** `name` without leading or trailing slashes; refused when it could reach outside the target. */
export function safeEntryPath(name: string): string {
  const p = name.replace(/^\/+/, '').replace(/\/+$/, '');
  if (p === '' || p.split('/').some((s) => s === '' || s === '.' || s === '..'))
    throw new TarError(`entry path ${JSON.stringify(name)} is empty or leaves the target directory`);
  return p;
}

/** Every entry of `buf`, in order; a TarError for anything but checksummed ustar files and directories. */
export function readTar(buf: Buffer): TarEntry[] {
  const entries: TarEntry[] = [];
  let off = 0;
  while (off + BLOCK <= buf.length) {
    const h = buf.subarray(off, off + BLOCK);
    if (h.every((b) => b === 0)) return entries;
    if (text(h, 257, 6) !== 'ustar') throw new TarError(`the header at byte ${off} is not a ustar header`);
    let sum = 0;
    for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i]!;
    if (sum !== octal(h, 148, 8, 'checksum')) throw new TarError(`the header at byte ${off} fails its checksum`);
    const name = text(h, 0, 100);
    const prefix = text(h, 345, 155);
    const path = safeEntryPath(prefix ? `${prefix}/${name}` : name);
    const size = octal(h, 124, 12, 'size');
    const flag = h[156];
    off += BLOCK;
    if (flag === 0x35) entries.push({ path, type: 'dir', data: buf.subarray(0, 0) });
    else if (flag === 0x30 || flag === 0) {
      if (off + size > buf.length) throw new TarError(`${path} is cut short`);
      entries.push({ path, type: 'file', data: buf.subarray(off, off + size) });
    } else throw new TarError(`${path} is neither a file nor a directory (type ${String.fromCharCode(flag!)})`);
    off += Math.ceil(size / BLOCK) * BLOCK;
  }
  throw new TarError('the archive ends before its end-of-archive block');
}
