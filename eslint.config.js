// Lint: typescript-eslint with type information, so floating promises are caught.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

// Boundaries (docs/architecture.md §6): packages never import a service, and a service
// never imports another service. Shared code belongs in packages/ (records in
// @talon/records, wire contracts in packages/kit/src/contracts.ts).
const SERVICES = ['gateway', 'orchestrator', 'memory', 'sandbox', 'vault', 'egress'];
const serviceImports = (names, why) => [
  { group: names.map((n) => `@talon/${n}`).concat(names.map((n) => `@talon/${n}/*`)), message: why },
  {
    group: names.flatMap((n) => [`**/services/${n}`, `**/services/${n}/**`, `**/${n}/src/**`, `**/${n}/test/**`]),
    message: why,
  },
];
// Services that must not load a NATS client (test/security/boundaries.test.ts checks what they load).
const NO_NATS = ['memory', 'vault'];
const boundaries = [
  {
    files: ['packages/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            ...serviceImports(SERVICES, 'packages never import a service; move the shared code into a package'),
            { group: ['**/services', '**/services/**'], message: 'packages never import a service' },
          ],
        },
      ],
    },
  },
  ...SERVICES.map((name) => ({
    files: [`services/${name}/**/*.ts`],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [
            {
              name: '@talon/kit',
              message:
                'import the @talon/kit subpath you need (@talon/kit/log, /grpc, /db, ...): the barrel loads all of the kit, NATS included',
            },
          ],
          patterns: [
            ...serviceImports(
              SERVICES.filter((n) => n !== name),
              'a service never imports another service; share code through packages/',
            ),
            ...(NO_NATS.includes(name)
              ? [
                  {
                    group: ['@nats-io/*', '@talon/kit/nats'],
                    message: `${name} holds no NATS client: it talks only to PostgreSQL and gRPC callers`,
                  },
                ]
              : []),
          ],
        },
      ],
    },
  })),
];

export default tseslint.config(
  {
    ignores: [
      '**/node_modules/**',
      'packages/proto/src/gen/**',
      'skills/**/build/**',
      'skills/**/assembly/**',
      'test/fixtures/**',
      '.talon/**',
      'bench/results/**',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': [
        'error',
        // node:test's describe/it return promises the runner itself awaits.
        {
          allowForKnownSafeCalls: [
            {
              from: 'package',
              package: 'node:test',
              name: ['describe', 'it', 'test', 'suite', 'before', 'after', 'beforeEach', 'afterEach'],
            },
          ],
        },
      ],
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: false }],
      '@typescript-eslint/await-thenable': 'error',
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      'no-constant-condition': ['error', { checkLoops: false }],
      eqeqeq: ['error', 'always'],
    },
  },
  ...boundaries,
  {
    files: ['services/gateway/public/**/*.js'],
    languageOptions: {
      // ES modules (app.js imports markdown.js; node's tests import markdown.js too).
      sourceType: 'module',
      globals: {
        document: 'readonly',
        window: 'readonly',
        sessionStorage: 'readonly',
        fetch: 'readonly',
        TextDecoder: 'readonly',
        WebSocket: 'readonly',
        location: 'readonly',
        console: 'readonly',
        navigator: 'readonly',
        crypto: 'readonly',
        URL: 'readonly',
        globalThis: 'readonly',
      },
    },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly', URL: 'readonly' } },
  },
);
