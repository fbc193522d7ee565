// Drives the example page in headless Chromium (the system's, through playwright-core): a
// real clip is uploaded, followed until its upload is final, and, when it is ready, the
// page's player must play the rendition.
// Environment: PAGE_URL, CLIP (the path of the clip).
// Prints JSON: states (each state the page was told, in order), upload (its id), final and
// text (its row's state and text), streams and polls (the page's requests to the state
// stream and to GET /v1/uploads/{id}), canPlay (canPlayType of H.264 + AAC in MP4),
// attributes (the player's), video (src, readyState, currentTime before and 1 s after
// play(), paused, error, size), cover (src, complete, natural size).
import { chromium } from 'playwright-core'

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox'],
})
const report = { states: [], streams: 0, polls: 0 }
try {
  const page = await browser.newPage()
  page.on('pageerror', (e) => console.error(`page error: ${e.message}`))
  page.on('request', (r) => {
    const path = new URL(r.url()).pathname
    if (/^\/v1\/uploads\/[^/]+\/events$/.test(path)) report.streams++
    else if (r.method() === 'GET' && /^\/v1\/uploads\/[^/]+$/.test(path)) report.polls++
  })
  await page.goto(process.env.PAGE_URL)
  report.canPlay = await page.evaluate(() =>
    document.createElement('video').canPlayType('video/mp4; codecs="avc1.42E01E, mp4a.40.2"'),
  )
  await page.exposeFunction('seen', (state) => report.states.push(state))
  await page.evaluate(() => window.uppy.on('mediagate:state', (file, upload) => seen(upload.state)))

  await page.locator('input[type=file]').first().setInputFiles([process.env.CLIP])
  await page.locator('.uppy-StatusBar-actionBtn--upload').click()
  const row = page.locator('#states li')
  // ffmpeg works in real time on a machine that may be busy with other tests. Past the
  // timeout the report says where the row stopped.
  await page
    .waitForFunction(
      () =>
        ['ready', 'failed', 'rejected', 'expired', 'skipped', 'triggered'].includes(
          document.querySelector('#states li')?.dataset.state,
        ),
      null,
      { timeout: 120000 },
    )
    .catch((e) => (report.timedOut = e.message))
  if (await row.count()) {
    report.upload = await row.getAttribute('data-upload')
    report.final = await row.getAttribute('data-state')
    report.text = await row.locator('span').textContent()
  }
  if (report.final === 'ready') {
    const video = row.locator('video')
    await video.waitFor({ state: 'attached' })
    report.attributes = await video.evaluate((v) =>
      ['controls', 'muted', 'playsinline'].filter((a) => v.hasAttribute(a)),
    )
    // HAVE_ENOUGH_DATA, or the media error that stopped it.
    await video
      .evaluate(
        (v) =>
          new Promise((done, fail) => {
            if (v.readyState === 4) return done()
            v.addEventListener('canplaythrough', done)
            v.addEventListener('error', () => fail(new Error(`media error ${v.error?.code}`)))
            setTimeout(() => fail(new Error(`readyState ${v.readyState} after 30 s`)), 30000)
          }),
      )
      .catch((e) => (report.videoError = e.message))
    report.video = await video.evaluate(async (v) => {
      const before = v.currentTime
      const played = await v.play().then(
        () => null,
        (e) => e.message,
      )
      // Let it run for a while: currentTime must move.
      await new Promise((r) => setTimeout(r, 1000))
      return {
        src: v.currentSrc,
        readyState: v.readyState,
        before,
        after: v.currentTime,
        paused: v.paused,
        played,
        error: v.error?.code ?? null,
        muted: v.muted,
        width: v.videoWidth,
        height: v.videoHeight,
      }
    })
    const img = row.locator('img')
    await img.evaluate((i) =>
      i.complete
        ? null
        : new Promise((r) => {
            i.addEventListener('load', r, { once: true })
            i.addEventListener('error', r, { once: true })
          }),
    )
    report.cover = await img.evaluate((i) => ({
      src: i.currentSrc,
      complete: i.complete,
      naturalWidth: i.naturalWidth,
      naturalHeight: i.naturalHeight,
    }))
  }
  console.log(JSON.stringify(report))
} finally {
  await browser.close()
}
