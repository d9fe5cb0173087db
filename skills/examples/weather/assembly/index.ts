// weather: one GET to api.open-meteo.com (the only host it asks for), through egress.
import { fail, httpGet, input, JSONObject, output } from '../../../sdk/assembly/index';

const API = 'https://api.open-meteo.com/v1/forecast';

export function run(): i32 {
  const args = input();
  const lat = args.getNumber('latitude');
  const lon = args.getNumber('longitude');
  const url =
    API +
    '?latitude=' +
    lat.toString() +
    '&longitude=' +
    lon.toString() +
    '&current=temperature_2m,relative_humidity_2m,wind_speed_10m,weather_code';
  const res = httpGet(url);
  if (res.errorCode.length > 0) return fail('weather request failed: ' + res.errorCode + ': ' + res.errorMessage);
  if (!res.ok) return fail('api.open-meteo.com answered HTTP ' + res.status.toString());
  const body = res.json();
  const current = body.get('current');
  if (current == null) return fail('unexpected answer from api.open-meteo.com (no "current")');
  output(
    new JSONObject()
      .num('latitude', lat)
      .num('longitude', lon)
      .str('time', current.getString('time'))
      .num('temperatureC', current.getNumber('temperature_2m'))
      .num('relativeHumidity', current.getNumber('relative_humidity_2m'))
      .num('windSpeedKmh', current.getNumber('wind_speed_10m'))
      .num('weatherCode', current.getNumber('weather_code'))
      .toString(),
  );
  return 0;
}
