// Headless Chromium (Debian's package) driven by playwright-core: no browser
// download, a fresh profile per launch. Fails loudly when Chromium is missing.
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

export const chromiumPath = process.env.GANTRY_CHROMIUM ?? '/usr/bin/chromium';

export const CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'];

export async function launchChromium(): Promise<Browser> {
  if (!existsSync(chromiumPath)) throw new Error(`chromium: ${chromiumPath} missing; run 'make deps' (scripts/deps.sh installs Debian's chromium)`);
  // playwright gives every launch a fresh temporary profile (--user-data-dir)
  return chromium.launch({ executablePath: chromiumPath, headless: true, args: CHROMIUM_FLAGS, timeout: 60_000 });
}
