// PostgreSQL URLs as operators write them, including libpq's Unix-socket form
// (`postgres://user@/db?host=/var/run/postgresql`, common on Debian), which the WHATWG
// URL parser refuses for its empty host. The socket directory travels in `host=`, which
// the pg driver (pg-connection-string) prefers over the URL's host name.

/** A URL object for `url`; an empty host becomes `localhost` (the `host=` parameter still decides where to connect). */
export function parseDbUrl(url: string): URL {
  const withHost = url.replace(
    /^(postgres(?:ql)?:\/\/)([^/?#@]*@)?(?=[/?#]|$)/,
    (_m, scheme: string, auth: string | undefined) => `${scheme}${auth ?? ''}localhost`,
  );
  try {
    return new URL(withHost);
  } catch {
    throw new Error(
      'the database URL is not a valid PostgreSQL URL; use postgres://user:password@host:5432/database, or postgres://user@/database?host=/var/run/postgresql for a Unix socket',
    );
  }
}
