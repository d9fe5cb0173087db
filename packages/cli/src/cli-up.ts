// `talon up` alone (bin.ts picks this entry for it): the supervisor lives as long as the
// platform, so it loads only what supervising needs, not the other commands' gRPC, NATS
// and database clients (≈80 MiB resident; docs/architecture.md §11).
import { registerUp } from './commands/up.ts';
import { createProgram, runProgram } from './program.ts';

const program = createProgram();
registerUp(program);
await runProgram(program);
