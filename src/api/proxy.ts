// Proxy agents for got from HTTPS_PROXY / HTTP_PROXY / NO_PROXY, decided per request URL:
// GitLab and the object storage it redirects to may need different treatment.
import { BlockList, isIP } from 'node:net';
import type { Agent as HttpAgent } from 'node:http';
import type { Agent as HttpsAgent } from 'node:https';
import { HttpProxyAgent, HttpsProxyAgent } from 'hpagent';

export type Env = Record<string, string | undefined>;

function envVar(env: Env, ...names: string[]): string | undefined {
  for (const n of names) {
    const v = env[n]?.trim();
    if (v) return v;
  }
  return undefined;
}

function defaultPort(protocol: string): number {
  return protocol === 'https:' ? 443 : 80;
}

function stripBrackets(host: string): string {
  return host.replace(/^\[|\]$/g, '');
}

/** Splits a NO_PROXY entry into host (lowercase, no brackets) and optional port. */
function parseEntry(entry: string): { host: string; port?: number } {
  let e = entry.trim().toLowerCase();
  e = e.replace(/^[a-z]+:\/\//, '').replace(/\/$/, '');
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(e);
  if (bracketed) return { host: bracketed[1]!, port: bracketed[2] ? Number(bracketed[2]) : undefined };
  if (isIP(e) === 6 || (e.includes('/') && e.includes(':'))) return { host: e }; // bare IPv6 (or IPv6 CIDR)
  const m = /^(.*?):(\d+)$/.exec(e);
  if (m) return { host: m[1]!, port: Number(m[2]) };
  return { host: e };
}

/**
 * True when `url` must NOT go through a proxy according to NO_PROXY `noProxy`:
 * `*`, exact hosts, `.suffix` / `*.suffix` / bare domains (matching subdomains too), `host:port`, IPs and IPv4/IPv6 CIDRs.
 */
export function shouldBypassProxy(url: string | URL, noProxy: string | undefined): boolean {
  if (!noProxy) return false;
  const u = typeof url === 'string' ? new URL(url) : url;
  const host = stripBrackets(u.hostname.toLowerCase()).replace(/\.$/, '');
  const port = u.port ? Number(u.port) : defaultPort(u.protocol);
  for (const raw of noProxy.split(/[\s,]+/)) {
    if (!raw) continue;
    if (raw.trim() === '*') return true;
    const entry = parseEntry(raw);
    if (entry.port !== undefined && entry.port !== port) continue;
    let pattern = entry.host.replace(/\.$/, '');
    if (!pattern) continue;
    if (pattern.includes('/')) {
      // CIDR
      const [net, bitsText] = pattern.split('/');
      const family = isIP(net!);
      const hostFamily = isIP(host);
      if (family && hostFamily === family) {
        try {
          const list = new BlockList();
          list.addSubnet(net!, Number(bitsText), family === 6 ? 'ipv6' : 'ipv4');
          if (list.check(host, family === 6 ? 'ipv6' : 'ipv4')) return true;
        } catch {
          /* malformed CIDR: ignore */
        }
      }
      continue;
    }
    if (isIP(pattern)) {
      if (pattern === host) return true;
      continue;
    }
    if (pattern.startsWith('*.')) pattern = pattern.slice(1);
    if (pattern.startsWith('.')) {
      if (host === pattern.slice(1) || host.endsWith(pattern)) return true;
      continue;
    }
    if (host === pattern || host.endsWith(`.${pattern}`)) return true;
  }
  return false;
}

/** The proxy URL to use for `url`, or undefined for a direct connection. */
export function proxyForUrl(url: string | URL, env: Env = process.env): string | undefined {
  const u = typeof url === 'string' ? new URL(url) : url;
  const proxy =
    u.protocol === 'https:'
      ? envVar(env, 'https_proxy', 'HTTPS_PROXY', 'http_proxy', 'HTTP_PROXY', 'all_proxy', 'ALL_PROXY')
      : envVar(env, 'http_proxy', 'HTTP_PROXY', 'all_proxy', 'ALL_PROXY');
  if (!proxy) return undefined;
  if (shouldBypassProxy(u, envVar(env, 'no_proxy', 'NO_PROXY'))) return undefined;
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(proxy) ? proxy : `http://${proxy}`;
}

export interface Agents {
  http?: HttpAgent;
  https?: HttpsAgent;
}

/** Returns a function giving got's `agent` option for a URL (undefined: direct). Agents are cached per proxy. */
export function createAgentResolver(env: Env = process.env, proxyCa?: string[]): (url: URL) => Agents | undefined {
  const cache = new Map<string, Agents>();
  return (url: URL) => {
    const proxy = proxyForUrl(url, env);
    if (!proxy) return undefined;
    let agents = cache.get(proxy);
    if (!agents) {
      const proxyRequestOptions = proxyCa ? { ca: proxyCa } : undefined;
      agents = {
        http: new HttpProxyAgent({ proxy, keepAlive: true, proxyRequestOptions }),
        https: new HttpsProxyAgent({ proxy, keepAlive: true, proxyRequestOptions }),
      };
      cache.set(proxy, agents);
    }
    return agents;
  };
}
