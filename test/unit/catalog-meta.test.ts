import fs from 'node:fs'
import path from 'node:path'
import fc from 'fast-check'
import {describe, expect, it} from 'vitest'
import {BUILTIN_SERVICES_DIR, plainServiceMeta, serviceMetaSchema} from '../../src/services/catalog.js'

// service.json as JSON.parse gives it: the fields of the schema, wrong types, unknown keys, odd names.
const json: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  value: fc.oneof(
    {depthSize: 'small'},
    fc.string(),
    fc.boolean(),
    fc.integer(),
    fc.constant(null),
    fc.array(tie('value'), {maxLength: 3}),
    fc.dictionary(fc.string(), tie('value'), {maxKeys: 3}),
  ),
})).value
const optionalField = <T>(value: fc.Arbitrary<T>) =>
  fc.option(fc.oneof({weight: 5, arbitrary: value}, json), {nil: undefined})
const paramName = fc.oneof(fc.constantFrom('port', 'password', '__proto__', 'constructor', '1', 'a.b'), fc.string())
const param = fc.record(
  {
    description: optionalField(fc.string()),
    default: optionalField(fc.string()),
    required: optionalField(fc.boolean()),
    secret: optionalField(fc.boolean()),
    input: optionalField(fc.boolean()),
    extra: fc.option(json, {freq: 10, nil: undefined}),
  },
  {requiredKeys: []},
)
const meta = fc.record(
  {
    description: optionalField(fc.string()),
    params: optionalField(fc.dictionary(paramName, fc.oneof({weight: 5, arbitrary: param}, json), {maxKeys: 4})),
    provides: optionalField(fc.array(fc.string(), {maxLength: 3})),
    after: optionalField(fc.array(fc.string(), {maxLength: 3})),
    roles: optionalField(fc.array(fc.string(), {maxLength: 3})),
    other: fc.option(json, {freq: 10, nil: undefined}),
  },
  {requiredKeys: []},
)
// Through JSON, as loadCatalog reads it: no undefined values, `__proto__` an own key.
const asRead = (value: unknown): unknown => JSON.parse(JSON.stringify(value) ?? 'null')

describe('reading service.json without zod', () => {
  it('gives what the schema gives, or leaves the file to the schema', () => {
    let plain = 0
    fc.assert(
      fc.property(fc.oneof(meta, json).map(asRead), (input) => {
        const fast = plainServiceMeta(input)
        const schema = serviceMetaSchema().safeParse(input)
        if (fast === undefined) return
        plain++
        expect(schema.success).toBe(true)
        // As JSON: keys, their order and values (a param named "constructor" confuses deep equality).
        expect(JSON.stringify(fast)).toBe(JSON.stringify(schema.data))
      }),
      {numRuns: 3000},
    )
    // Not vacuous: some inputs took the plain path (59-79 in eight runs of 3,000; one CI run had 40).
    expect(plain).toBeGreaterThan(15)
  })

  it("reads nodeset's own services itself", () => {
    for (const name of fs.readdirSync(BUILTIN_SERVICES_DIR)) {
      const file = path.join(BUILTIN_SERVICES_DIR, name, 'service.json')
      if (!fs.existsSync(file)) continue
      const input: unknown = JSON.parse(fs.readFileSync(file, 'utf8'))
      expect(JSON.stringify(plainServiceMeta(input)), name).toBe(JSON.stringify(serviceMetaSchema().parse(input)))
    }
  })
})
