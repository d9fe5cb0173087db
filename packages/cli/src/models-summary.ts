// What `talon up` says about the configured models: each with its providers in failover
// order, and one `talon secrets set` per key, bound to every host that uses it (egress
// fills a key only for the hosts it is bound to). Pure.
import { KEY_PLACEMENT, keyBindings, type ModelsConfig } from '@talon/kit/models';

/** One line per model: `name  label host model > label host model`. */
export function modelLines(cfg: ModelsConfig): string[] {
  return cfg.models.map(
    (m, i) =>
      `${m.name}${i === 0 ? ' (default)' : ''}: ${m.targets.map((t) => `${t.label} ${new URL(t.baseUrl).host} ${t.model}`).join(' > ')}`,
  );
}

/** The commands that store each key with its hosts and placement (value on stdin). */
export function keyCommands(cfg: ModelsConfig): string[] {
  return keyBindings(cfg).map((b) => {
    const placement = b.format === 'openai' ? '' : ` ${KEY_PLACEMENT[b.format].cli}`;
    return `npm run talon -- secrets set ${b.secret} --host ${b.hosts.join(',')}${placement}`;
  });
}
