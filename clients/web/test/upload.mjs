// Drives the example page in headless Chromium (the system's, through playwright-core).
// Environment: PAGE_URL, FILES (JSON list of paths uploaded together), RESUME (a path
// uploaded across a page reload), FOREIGN (JSON {id, key} of another user's upload).
// 1. FILES are picked with the Dashboard's input and uploaded; the first multipart part's
//    request is cut once (the upload must recover), and the page tries to have another key
//    signed. 2. RESUME is uploaded until its first part is in, the page is reloaded mid-upload,
//    the file is added again, and only the missing parts may be sent.
// Prints JSON: states, cut, forged (HTTP statuses), partsAfterReload.
import { chromium } from 'playwright-core'

const part = (request) => new URL(request.url()).searchParams.get('partNumber')
const triggered = (page, n) =>
  page.waitForFunction(
    (n) => document.querySelectorAll('#states li[data-state=triggered]').length >= n,
    n,
    { timeout: 120000 },
  )
const states = (page) =>
  page.$$eval('#states li', (rows) =>
    rows.map((r) => ({ upload: r.dataset.upload, file: r.dataset.file, state: r.dataset.state })),
  )
async function start(page, files) {
  await page.locator('input[type=file]').first().setInputFiles(files)
  await page.locator('.uppy-StatusBar-actionBtn--upload').click()
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox'],
})
const report = {}
try {
  const context = await browser.newContext()
  const page = await context.newPage()
  page.on('pageerror', (e) => console.error(`page error: ${e.message}`))

  // 1. Several files; the network drops the first part once.
  let cut = false
  await page.route(
    (url) => url.searchParams.get('partNumber') === '1',
    (route) => (cut ? route.continue() : ((cut = true), route.abort('connectionreset'))),
  )
  await page.goto(process.env.PAGE_URL)
  const files = JSON.parse(process.env.FILES)
  await start(page, files)
  await triggered(page, files.length)
  report.states = await states(page)
  report.cut = cut
  await page.unrouteAll()

  // The page cannot have anything but its own upload's key signed.
  const foreign = JSON.parse(process.env.FOREIGN)
  const own = report.states[0].upload
  report.forged = await page.evaluate(
    async ({ own, foreign }) => {
      const params = new URLSearchParams(location.search)
      const sign = (id, key) =>
        fetch(`${params.get('api')}/v1/uploads/${id}/sign`, {
          method: 'POST',
          headers: {
            authorization: `Bearer ${params.get('token')}`,
            'content-type': 'application/json',
          },
          body: JSON.stringify({ method: 'PUT', key }),
        }).then((r) => r.status)
      return [await sign(own, foreign.key), await sign(foreign.id, foreign.key)]
    },
    { own, foreign },
  )

  // 2. A reload in the middle of a multipart upload.
  const resume = process.env.RESUME
  const resumed = await context.newPage()
  resumed.on('pageerror', (e) => console.error(`page error: ${e.message}`))
  await resumed.route(
    (url) => url.searchParams.get('partNumber') === '2',
    () => {}, // held: the upload stops after its first part
  )
  await resumed.goto(process.env.PAGE_URL)
  const firstPart = resumed.waitForResponse(
    (r) => part(r.request()) === '1' && r.request().method() === 'PUT' && r.ok(),
  )
  await start(resumed, [resume])
  await firstPart
  await resumed.unrouteAll({ behavior: 'ignoreErrors' })
  const sent = []
  await resumed.reload()
  resumed.on('request', (r) => {
    if (r.method() === 'PUT' && part(r)) sent.push(Number(part(r)))
    if (r.method() === 'GET' && new URL(r.url()).searchParams.get('uploadId')) sent.push('list')
  })
  await start(resumed, [resume])
  await triggered(resumed, 1)
  report.partsAfterReload = sent
  report.resumed = await states(resumed)
  console.log(JSON.stringify(report))
} finally {
  await browser.close()
}
