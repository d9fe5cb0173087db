// unit-convert: a pure skill (no host calls). Input {value, from, to}; output {value, unit}.
import { fail, input, JSONObject, output } from '../../../sdk/assembly/index';

class Unit {
  constructor(
    public name: string,
    public dimension: string,
    public factor: f64, // to the dimension's base unit
  ) {}
}

const UNITS: Unit[] = [
  new Unit('m', 'length', 1),
  new Unit('km', 'length', 1000),
  new Unit('cm', 'length', 0.01),
  new Unit('mm', 'length', 0.001),
  new Unit('mi', 'length', 1609.344),
  new Unit('yd', 'length', 0.9144),
  new Unit('ft', 'length', 0.3048),
  new Unit('in', 'length', 0.0254),
  new Unit('kg', 'mass', 1),
  new Unit('g', 'mass', 0.001),
  new Unit('lb', 'mass', 0.45359237),
  new Unit('oz', 'mass', 0.028349523125),
  new Unit('l', 'volume', 1),
  new Unit('ml', 'volume', 0.001),
  new Unit('gal', 'volume', 3.785411784),
  new Unit('C', 'temperature', 1),
  new Unit('F', 'temperature', 1),
  new Unit('K', 'temperature', 1),
];

function find(name: string): Unit | null {
  for (let i = 0; i < UNITS.length; i++) if (UNITS[i].name == name) return UNITS[i];
  return null;
}

function toCelsius(v: f64, unit: string): f64 {
  if (unit == 'F') return ((v - 32) * 5) / 9;
  if (unit == 'K') return v - 273.15;
  return v;
}

function fromCelsius(c: f64, unit: string): f64 {
  if (unit == 'F') return (c * 9) / 5 + 32;
  if (unit == 'K') return c + 273.15;
  return c;
}

export function run(): i32 {
  const args = input();
  const value = args.getNumber('value');
  const from = find(args.getString('from'));
  const to = find(args.getString('to'));
  if (from == null || to == null) return fail('unknown unit; use one of m km cm mm mi yd ft in kg g lb oz l ml gal C F K');
  if (from.dimension != to.dimension) return fail('cannot convert ' + from.dimension + ' to ' + to.dimension);
  let result: f64;
  if (from.dimension == 'temperature') result = fromCelsius(toCelsius(value, from.name), to.name);
  else result = (value * from.factor) / to.factor;
  // Round to 6 significant decimals so the model sees clean numbers.
  result = Math.round(result * 1e6) / 1e6;
  output(new JSONObject().num('value', result).str('unit', to.name).toString());
  return 0;
}
