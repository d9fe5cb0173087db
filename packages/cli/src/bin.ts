// The `talon` executable. Node's compile cache is switched on before the command line
// and everything it imports is loaded (static imports would be compiled first), so every
// later `talon` command skips compiling and type stripping.
import { enableCompileCache } from 'node:module';

enableCompileCache();
await import('./cli.ts');
