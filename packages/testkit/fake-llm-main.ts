import { startFakeLlm } from './src/fake-llm.ts';
const f = await startFakeLlm({}, Number(process.argv[2] ?? 18999));
console.log('fake llm at', f.url);
