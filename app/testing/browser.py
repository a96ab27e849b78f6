"""A real browser for the web's pages: Debian's headless Chromium driven by its
chromedriver (Selenium), each session with its own WebDriver virtual authenticator, so a
passkey is made and used as on a person's laptop. `.ci/run` installs both packages."""

from __future__ import annotations

import shutil
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.virtual_authenticator import (
    Protocol,
    Transport,
    VirtualAuthenticatorOptions,
)
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def missing() -> str | None:
    """Why no browser can start here, or None."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if shutil.which(path) is None:
            return f"{path} is missing: apt-get install -y chromium chromium-driver ({package})"
    return None


class Browser:
    """One person's browser, with a platform authenticator that verifies its user."""

    def __init__(self) -> None:
        problem = missing()
        if problem:
            raise RuntimeError(problem)
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
            options.add_argument(arg)
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.driver.add_virtual_authenticator(
            VirtualAuthenticatorOptions(
                protocol=Protocol.CTAP2,
                transport=Transport.INTERNAL,
                has_resident_key=True,
                has_user_verification=True,
                is_user_verified=True,
            )
        )

    def open(self, url: str) -> str:
        """The page's text."""
        self.driver.get(url)
        return str(self.driver.find_element(By.TAG_NAME, "body").text)

    def press(self, timeout: float = 20) -> str:
        """Click the page's button and wait for what it says in the status line."""
        self.driver.find_element(By.ID, "go").click()

        def said(driver: Any) -> str | bool:
            text = driver.find_element(By.ID, "status").text
            return text if text and not text.startswith("Waiting") else False

        return str(WebDriverWait(self.driver, timeout).until(said))

    def credentials(self) -> list[str]:
        """The ids (base64url) of the passkeys this browser's authenticator holds."""
        # Selenium hands them over as padded base64url.
        return [str(c.id).rstrip("=") for c in self.driver.get_credentials()]

    def script(self, source: str, *args: Any) -> Any:
        """Run async JavaScript on the page (the last argument is the callback)."""
        return self.driver.execute_async_script(source, *args)

    def close(self) -> None:
        self.driver.quit()
