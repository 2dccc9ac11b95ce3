// Drive a SMART launch in headless Chromium and print the app's result as JSON.
// usage: node run.mjs <standalone|ehr> <server url> <username> <password> <patient id>
import { chromium } from "playwright-core";

const [mode, server, username, password, patient] = process.argv.slice(2);
const executablePath = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const browser = await chromium.launch({ executablePath, headless: true, args: ["--no-sandbox"] });
const page = await browser.newPage();
const fail = async (msg) => {
  console.log(JSON.stringify({ error: msg, url: page.url(), html: (await page.content()).slice(0, 1500) }));
  await browser.close();
  process.exit(1);
};

async function signIn() {
  await page.fill("#username", username);
  await page.fill("#password", password);
  await Promise.all([page.waitForLoadState(), page.click("#login")]);
}

try {
  if (mode === "ehr") {
    await page.goto(`${server}/ehr`);
    await signIn();
    await page.selectOption("#app", { label: "JS app" });
    await page.check(`input[name=_patient][value="${patient}"]`);
    await Promise.all([page.waitForURL(/\/oauth\/authorize/), page.click("#launch")]);
  } else {
    await page.goto(`${server}/app/launch.html?iss=${encodeURIComponent(server + "/fhir")}`);
    await page.waitForURL(/\/oauth\/authorize/);
    await signIn();
    if (await page.$("#pick")) {
      await page.check(`input[name=_patient][value="${patient}"]`);
      await Promise.all([page.waitForLoadState(), page.click("#pick")]);
    }
  }
  await Promise.all([page.waitForURL(/\/app\/index\.html/), page.click("#approve")]);
  await page.waitForFunction(() => document.getElementById("out")?.textContent, null, { timeout: 15000 });
  console.log(await page.textContent("#out"));
  await browser.close();
} catch (e) {
  await fail(String(e));
}
