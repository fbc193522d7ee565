// Drives the example page in headless Chromium (the system's, through playwright-core):
// picks the files in FILES (JSON list of paths) with the Dashboard's file input, starts the
// upload, and waits until mediagate reports every file triggered. Prints the states as JSON.
import { chromium } from 'playwright-core'

const files = JSON.parse(process.env.FILES)
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox'],
})
try {
  const page = await browser.newPage()
  page.on('console', (m) => console.error(`page: ${m.text()}`))
  page.on('pageerror', (e) => console.error(`page error: ${e.message}`))
  await page.goto(process.env.PAGE_URL)
  await page.locator('input[type=file]').first().setInputFiles(files)
  await page.locator('.uppy-StatusBar-actionBtn--upload').click()
  await page.waitForFunction(
    (n) => document.querySelectorAll('#states li[data-state=triggered]').length >= n,
    files.length,
    { timeout: 120000 },
  )
  const states = await page.$$eval('#states li', (rows) =>
    rows.map((r) => ({ upload: r.dataset.upload, file: r.dataset.file, state: r.dataset.state })),
  )
  console.log(JSON.stringify(states))
} finally {
  await browser.close()
}
