// The `talon` executable. Node's compile cache is switched on before the command line
// and everything it imports is loaded (static imports would be compiled first), so every
// later `talon` command skips compiling and type stripping (bin/talon.mjs switches it on
// even earlier, so this file too is not type-stripped). `talon up` gets an entry of its own
// that loads only the supervisor.
import { enableCompileCache } from 'node:module';

enableCompileCache();
await import(process.argv[2] === 'up' ? './cli-up.ts' : './cli.ts');
