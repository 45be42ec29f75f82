import {describe, expect, it} from 'vitest'
import {parseListen} from '../../src/core/address.js'

describe('nodeset config-server --listen', () => {
  it('reads HOST:PORT, [IPv6]:PORT and :PORT', () => {
    expect(parseListen('127.0.0.1:8470')).toEqual({host: '127.0.0.1', port: 8470})
    expect(parseListen('config.example.test:443')).toEqual({host: 'config.example.test', port: 443})
    expect(parseListen('[::1]:8470')).toEqual({host: '::1', port: 8470})
    expect(parseListen(':8470')).toEqual({host: '0.0.0.0', port: 8470})
    expect(parseListen('127.0.0.1:0')).toEqual({host: '127.0.0.1', port: 0})
  })

  it('refuses anything else, with an example', () => {
    for (const bad of ['8470', '127.0.0.1', '127.0.0.1:99999', '::1:8470', 'host:port', '']) {
      expect(() => parseListen(bad)).toThrow(/expected HOST:PORT, e\.g\. 127\.0\.0\.1:8470/)
    }
  })
})
