// ESLint: typescript-eslint's recommended rules, and the layer order of src/ as an import boundary.
// eslint-plugin-boundaries classifies each folder of src/ as one layer and fails an import that goes
// up the order; it reads the folders as they are, so a new folder must be placed here to be allowed.
import js from '@eslint/js'
import boundaries from 'eslint-plugin-boundaries'
import globals from 'globals'
import tseslint from 'typescript-eslint'

/** src/ folders from the bottom up: a module imports only from its own layer and those before it. */
export const LAYERS = [
  'core',
  'services',
  'nodeset',
  'plan',
  'configserver',
  'ssh',
  'providers',
  'setup',
  'deploy',
  'operations',
  'web',
  'cli',
  'commands',
  'hooks',
]

export default tseslint.config(
  {ignores: ['dist/**', 'node_modules/**', 'coverage/**', 'examples/**', 'templates/**', '**/*.d.ts']},
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {globals: globals.node},
    rules: {
      '@typescript-eslint/no-unused-vars': [
        'error',
        {argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none'},
      ],
      '@typescript-eslint/no-non-null-assertion': 'off',
      'no-empty': ['error', {allowEmptyCatch: false}],
    },
  },
  {
    files: ['src/**/*.ts'],
    plugins: {boundaries},
    settings: {
      'boundaries/elements': LAYERS.map((type) => ({type, pattern: `src/${type}`})),
      'boundaries/include': ['src/**/*.ts'],
      'import/resolver': {typescript: {project: './tsconfig.json'}},
    },
    rules: {
      'boundaries/no-unknown-files': 'error',
      'boundaries/dependencies': [
        'error',
        {
          default: 'disallow',
          message:
            '{{from.type}} may import only from layers below it (eslint.config.js LAYERS); {{to.type}} is above it',
          policies: LAYERS.map((type, index) => ({
            from: {element: {type}},
            allow: {to: {element: {types: {anyOf: LAYERS.slice(0, index + 1)}}}},
          })),
        },
      ],
    },
  },
  {
    files: ['test/**/*.ts', 'bench/**/*.{ts,js}'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {group: ['**/src/commands/**'], message: 'test what the command calls, in src/operations or below'},
          ],
        },
      ],
    },
  },
)
