// Reads the PEM file of extra CA certificates (input ca_file) for the API client.
import { readFileSync } from 'node:fs';
import { RelayError } from '../runtime/errors.ts';

/** The PEM text of `file`; a RelayError naming ca_file when it cannot be read or holds no certificate. */
export function readCaFile(file: string): string {
  let pem: string;
  try {
    pem = readFileSync(file, 'utf8');
  } catch (err) {
    throw new RelayError(
      `Cannot read ca_file ${file}: ${(err as Error).message}`,
      'Point ca_file at a readable PEM file of CA certificates, or leave it empty.',
      {
        code: (err as { code?: string }).code,
      },
    );
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) {
    throw new RelayError(
      `ca_file ${file} holds no PEM certificate (no "-----BEGIN CERTIFICATE-----" line).`,
      'Point ca_file at a PEM file of CA certificates.',
    );
  }
  return pem;
}
