/** The SSRF classifier: every spelling of an address is judged by the address it means. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { classifyAddress, parseIPv4 } from "../src/registry/_address.js";

describe("address classes", () => {
  it("reads IPv4 as inet_aton does: decimal, hex, octal, short forms", () => {
    for (const s of ["127.0.0.1", "2130706433", "0x7f000001", "0177.0.0.1", "0x7f.1", "127.1", "0x7F.0.0.01"])
      assert.equal(parseIPv4(s), 0x7f000001, s);
    for (const s of ["256.0.0.1", "1.2.3.4.5", "08.0.0.1", "1.2.3.0x100", "", "a.b.c.d", "4294967296"])
      assert.equal(parseIPv4(s), undefined, s);
  });

  it("classifies every non-public range, in every form", () => {
    const table: [string, string][] = [
      ["0.0.0.0", "unspecified"],
      ["0.1.2.3", "reserved"],
      ["127.0.0.1", "loopback"],
      ["127.255.255.254", "loopback"],
      ["2130706433", "loopback"],
      ["0x7f000001", "loopback"],
      ["0177.0.0.1", "loopback"],
      ["10.1.2.3", "private"],
      ["172.16.0.1", "private"],
      ["172.31.255.255", "private"],
      ["192.168.1.10", "private"],
      ["100.64.0.1", "shared"],
      ["100.127.255.255", "shared"],
      ["169.254.169.254", "link-local"],
      ["2852039166", "link-local"],
      ["224.0.0.1", "multicast"],
      ["255.255.255.255", "reserved"],
      ["::", "unspecified"],
      ["::1", "loopback"],
      ["[::1]", "loopback"],
      ["::ffff:127.0.0.1", "loopback"],
      ["::ffff:7f00:1", "loopback"],
      ["[::ffff:a9fe:a9fe]", "link-local"],
      ["::ffff:169.254.169.254", "link-local"],
      ["::127.0.0.1", "loopback"],
      ["::ffff:0:10.0.0.1", "private"],
      ["64:ff9b::169.254.169.254", "link-local"],
      ["64:ff9b::a00:1", "private"],
      ["64:ff9b:1::1", "private"],
      ["2002:7f00:1::1", "loopback"],
      ["fc00::1", "private"],
      ["fd12:3456::1", "private"],
      ["fe80::1", "link-local"],
      ["fe80::1%eth0", "link-local"],
      ["ff02::1", "multicast"],
    ];
    for (const [addr, want] of table) assert.equal(classifyAddress(addr), want, addr);
  });

  it("leaves public addresses public", () => {
    for (const s of [
      "8.8.8.8",
      "172.32.0.1",
      "100.128.0.1",
      "203.0.113.10",
      "2606:4700::1111",
      "::ffff:8.8.8.8",
      "64:ff9b::808:808",
    ])
      assert.equal(classifyAddress(s), "public", s);
  });

  it("says names are not addresses", () => {
    for (const s of ["registry.example", "localhost", "a1", "1.2.3.4.example"])
      assert.equal(classifyAddress(s), undefined, s);
  });
});
