// Runs the fake LLM standalone (manual trials, benchmarks):
//   node packages/testkit/src/fake-llm-server.ts [port]
import { startFakeLlm } from './fake-llm.ts';

const fake = await startFakeLlm({}, Number(process.argv[2] ?? 18999));
process.stdout.write(`fake OpenAI-compatible LLM at ${fake.url} (echoes the last user message)\n`);
process.on('SIGINT', () => void fake.close().then(() => process.exit(0)));
process.on('SIGTERM', () => void fake.close().then(() => process.exit(0)));
