// Where in a request a secret's value may be put (the vault binds one placement into each
// secret's policy; egress names the placement each placeholder occupies). One table of
// names for the vault's stored policies, egress's errors and the CLI.
import { Placement } from '@talon/proto';

export const PLACEMENT_NAMES = {
  [Placement.PLACEMENT_BEARER]: 'bearer',
  [Placement.PLACEMENT_BASIC]: 'basic',
  [Placement.PLACEMENT_HEADER]: 'header',
  [Placement.PLACEMENT_QUERY]: 'query',
  [Placement.PLACEMENT_PATH]: 'path',
  [Placement.PLACEMENT_WEBSOCKET_FRAME]: 'frame',
} as const;
export type PlacementName = (typeof PLACEMENT_NAMES)[keyof typeof PLACEMENT_NAMES];

export const PLACEMENT_BY_NAME: Readonly<Record<PlacementName, Placement>> = Object.freeze(
  Object.fromEntries(Object.entries(PLACEMENT_NAMES).map(([p, n]) => [n, Number(p) as Placement])) as Record<PlacementName, Placement>,
);

/** The name of a placement, `unspecified` for one outside the table. */
export function placementName(p: Placement): PlacementName | 'unspecified' {
  return p in PLACEMENT_NAMES ? PLACEMENT_NAMES[p as keyof typeof PLACEMENT_NAMES] : 'unspecified';
}
