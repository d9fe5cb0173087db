// A Talon skill. Build: `node skills/build.ts <this directory>` (from the Talon repository),
// then sign: `talon skills sign <this directory> --key <publisher key>`.
//
// The skill reads its JSON input, may call HTTP APIs through egress (only hosts listed in
// skill.json's permissions.hosts, once the operator approves them), and writes its output.
// Secrets never reach the skill: put a placeholder such as secret('github_token') in a
// header and egress fills in the value on the way out.
import { fail, input, JSONObject, output } from './talon/index';

export function run(): i32 {
  const args = input();
  const name = args.getString('name');
  if (name.length == 0) return fail('name is required');
  output(new JSONObject().str('greeting', 'Hello, ' + name + '!').toString());
  return 0;
}
