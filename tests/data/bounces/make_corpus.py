"""Write the bounce corpus: messages in the shapes real servers send, each with its expected verdict.

Run `python tests/data/bounces/make_corpus.py` to regenerate; review the diff. Every message here was
written for this project (no real person's mail); the expected verdicts in verdicts.toml are ours,
chosen from what each server's message means, never from what the parser answers.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent
SENDER = "newsletter@ms-research.example.org"
VERP = "bounces+2026-11-25.{sid}.ab12cd34ef56ab12@bounces.ms-research.example.org"
DATE = "Wed, 25 Nov 2026 09:{mm:02d}:00 +0000"
CORPUS: list[tuple[str, str, dict[str, object]]] = []


def original(rcpt: str, sid: int, *, with_return_path: bool = True) -> str:
    rp = f"Return-Path: <{VERP.format(sid=sid)}>\n" if with_return_path else ""
    return (f"{rp}From: MS Research in Plain Words <{SENDER}>\nTo: <{rcpt}>\n"
            f"Subject: New research in plain words, November\nDate: Wed, 25 Nov 2026 08:00:00 +0000\n"
            f"Message-ID: <2026-11-25.{sid}.0f1e2d3c4b5a69788796@ms-research.example.org>\n"
            "List-Id: \"MS Research in Plain Words\" <research-news.ms-research.example.org>\n"
            "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n")


def add(name: str, text: str, **expected: object) -> None:
    CORPUS.append((name, text.lstrip("\n"), expected))


def dsn(*, mta_from: str, subject: str, human: str, rcpt: str, sid: int, action: str, status: str, diag: str,
        reporting: str, extra_headers: str = "", original_part: str = "headers", final: str | None = None,
        boundary: str = "b0und4ry", extra_block: str = "") -> str:
    final = final or rcpt
    if original_part == "headers":
        orig = (f"--{boundary}\nContent-Description: Undelivered Message Headers\nContent-Type: text/rfc822-headers\n\n"
                f"{original(rcpt, sid)}\n")
    else:
        orig = (f"--{boundary}\nContent-Type: message/rfc822\nContent-Description: Undelivered Message\n\n"
                f"{original(rcpt, sid)}\nHello,\nThis month: three studies in plain words.\n\n")
    return f"""
Return-Path: <>
From: {mta_from}
To: <{VERP.format(sid=sid)}>
Subject: {subject}
Date: {DATE.format(mm=sid % 60)}
Message-ID: <dsn.{sid}.{reporting}@{reporting}>
Auto-Submitted: auto-replied
MIME-Version: 1.0
{extra_headers}Content-Type: multipart/report; report-type=delivery-status;
	boundary="{boundary}"

This is a MIME-encapsulated message.

--{boundary}
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

{human}

--{boundary}
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; {reporting}
Arrival-Date: Wed, 25 Nov 2026 08:00:01 +0000

Final-Recipient: rfc822; {final}
{extra_block}Action: {action}
Status: {status}
Diagnostic-Code: smtp; {diag}

{orig}--{boundary}--
"""


# --- Postfix -----------------------------------------------------------------------------------------
POSTFIX_INTRO = """This is the mail system at host mx1.ms-research.example.org.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

For further assistance, please send mail to postmaster.

If you do so, please include this problem report. You can
delete your own text from the attached returned message.

                   The mail system

<{rcpt}>: host {host}[192.0.2.10] said: {diag} (in reply to RCPT TO command)"""


def postfix(name: str, rcpt: str, sid: int, action: str, status: str, diag: str, host: str = "mx.example.net",
            **expected: object) -> None:
    add(name, dsn(mta_from="MAILER-DAEMON@mx1.ms-research.example.org (Mail Delivery System)",
                  subject="Undelivered Mail Returned to Sender" if action == "failed" else
                  "Delayed Mail (still being retried)",
                  human=POSTFIX_INTRO.format(rcpt=rcpt, host=host, diag=diag), rcpt=rcpt, sid=sid, action=action,
                  status=status, diag=diag, reporting="mx1.ms-research.example.org",
                  extra_block=f"Original-Recipient: rfc822;{rcpt}\n"), **expected)


postfix("postfix-user-unknown.eml", "ann.lee@example.net", 11, "failed", "5.1.1",
        "550 5.1.1 <ann.lee@example.net>: Recipient address rejected: User unknown in virtual mailbox table",
        kind="hard", recipients=["ann.lee@example.net"], code="5.1.1")
postfix("postfix-mailbox-full.eml", "bo.chen@example.net", 12, "failed", "5.2.2",
        "552 5.2.2 <bo.chen@example.net>: Mailbox full", kind="soft", recipients=["bo.chen@example.net"],
        code="5.2.2")
postfix("postfix-domain-not-found.eml", "cara@no-such-domain.example", 13, "failed", "5.4.4",
        "Host or domain name not found. Name service error for name=no-such-domain.example type=AAAA: Host not found",
        kind="hard", recipients=["cara@no-such-domain.example"], code="5.4.4")
postfix("postfix-delayed.eml", "dev@example.net", 14, "delayed", "4.4.1",
        "connect to mx.example.net[192.0.2.10]:25: Connection timed out", kind="ignored")
postfix("postfix-expired.eml", "eli@example.net", 15, "failed", "4.4.1",
        "delivery temporarily suspended: connect to mx.example.net[192.0.2.10]:25: Connection timed out",
        kind="soft", recipients=["eli@example.net"], code="4.4.1")
postfix("postfix-spam-policy.eml", "fay@example.net", 16, "failed", "5.7.1",
        "554 5.7.1 Service unavailable; Client host [198.51.100.7] blocked using zen.spamhaus.example",
        kind="soft", recipients=["fay@example.net"], code="5.7.1")
add("postfix-alias-original-recipient.eml", dsn(
    mta_from="MAILER-DAEMON@mx1.ms-research.example.org (Mail Delivery System)",
    subject="Undelivered Mail Returned to Sender",
    human=POSTFIX_INTRO.format(rcpt="gus.forwarded@example.org", host="mx.example.org",
                               diag="550 5.1.1 User unknown"),
    rcpt="gus@example.net", final="gus.forwarded@example.org", sid=17, action="failed", status="5.1.1",
    diag="550 5.1.1 <gus.forwarded@example.org>... User unknown", reporting="mx1.ms-research.example.org",
    extra_block="Original-Recipient: rfc822;gus@example.net\n"),
    kind="hard", recipients=["gus@example.net"], code="5.1.1")

# --- Exim (classic, non-DSN, with X-Failed-Recipients) ----------------------------------------------


def exim(name: str, rcpt: str, sid: int, detail: str, **expected: object) -> None:
    add(name, f"""
Return-path: <>
Envelope-to: {VERP.format(sid=sid)}
Delivery-date: {DATE.format(mm=sid)}
Received: from Debian-exim by mail.example.com with local (Exim 4.96)
	id 1tAbCd-000123-4x
	for {VERP.format(sid=sid)}; {DATE.format(mm=sid)}
X-Failed-Recipients: {rcpt}
Auto-Submitted: auto-replied
From: Mail Delivery System <Mailer-Daemon@mail.example.com>
To: {VERP.format(sid=sid)}
Content-Type: text/plain; charset=us-ascii
Subject: Mail delivery failed: returning message to sender
Message-Id: <E1tAbCd-000123-4x@mail.example.com>
Date: {DATE.format(mm=sid)}

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  {rcpt}
    {detail}

------ This is a copy of the message, including all the headers. ------

{original(rcpt, sid)}
Hello,
This month: three studies in plain words.
""", **expected)


exim("exim-unrouteable.eml", "hal@gone.example.com", 21, "Unrouteable address",
     kind="hard", recipients=["hal@gone.example.com"], code="")
exim("exim-user-unknown.eml", "ida@example.com", 22,
     "host mx.example.com [203.0.113.5]\n    SMTP error from remote mail server after RCPT TO:<ida@example.com>:\n"
     "    550 5.1.1 <ida@example.com>: Recipient address rejected: User unknown in local recipient table",
     kind="hard", recipients=["ida@example.com"], code="5.1.1")
exim("exim-retry-timeout.eml", "jo@example.com", 23,
     "retry timeout exceeded", kind="soft", recipients=["jo@example.com"], code="")
exim("exim-quota.eml", "kim@example.com", 24,
     "mailbox is full: retry timeout exceeded\n    (Mailbox quota exceeded)",
     kind="soft", recipients=["kim@example.com"], code="")
add("exim-dsn.eml", dsn(
    mta_from="Mail Delivery System <Mailer-Daemon@mail.example.com>",
    subject="Mail delivery failed: returning message to sender",
    human="This message was created automatically by mail delivery software.\n\nA message that you sent could "
          "not be delivered to one or more of its\nrecipients. This is a permanent error. The following "
          "address(es) failed:\n\n  lou@example.com\n    host mx.example.com [203.0.113.5]\n    SMTP error from "
          "remote mail server after RCPT TO:<lou@example.com>:\n    550 5.1.1 No such user here",
    rcpt="lou@example.com", sid=25, action="failed", status="5.0.0", diag="550 5.1.1 No such user here",
    reporting="mail.example.com", extra_headers="X-Failed-Recipients: lou@example.com\n"),
    kind="hard", recipients=["lou@example.com"], code="5.0.0")

# --- Exchange (on-premises) ---------------------------------------------------------------------------
EXCHANGE_HUMAN = """Delivery has failed to these recipients or groups:

{rcpt}
{words}

Diagnostic information for administrators:

Generating server: EXCH01.corp.example.org

{rcpt}
Remote Server returned '{diag}'

Original message headers:"""

add("exchange-2010-recipient-not-found.eml", dsn(
    mta_from="Microsoft Exchange <MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@corp.example.org>",
    subject="Undeliverable: New research in plain words, November",
    human=EXCHANGE_HUMAN.format(rcpt="max@corp.example.org",
                                words="The e-mail address you entered couldn't be found. Please check the "
                                      "recipient's e-mail address and try to resend the message.",
                                diag="550 5.1.1 RESOLVER.ADR.RecipNotFound; not found"),
    rcpt="max@corp.example.org", sid=31, action="failed", status="5.1.1",
    diag="550 5.1.1 RESOLVER.ADR.RecipNotFound; not found", reporting="EXCH01.corp.example.org",
    original_part="rfc822", extra_headers="X-MS-Exchange-Message-Is-Ndr:\nContent-Language: en-US\n"),
    kind="hard", recipients=["max@corp.example.org"], code="5.1.1")
add("exchange-mailbox-full.eml", dsn(
    mta_from="Microsoft Exchange <MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@corp.example.org>",
    subject="Undeliverable: New research in plain words, November",
    human=EXCHANGE_HUMAN.format(rcpt="ned@corp.example.org", words="The recipient's mailbox is full and can't "
                                "accept messages now. Please try resending your message later.",
                                diag="554 5.2.2 mailbox full; STOREDRV.Deliver.Exception:QuotaExceededException"),
    rcpt="ned@corp.example.org", sid=32, action="failed", status="5.2.2",
    diag="554 5.2.2 mailbox full; STOREDRV.Deliver.Exception:QuotaExceededException.MapiExceptionShutoffQuotaExceeded",
    reporting="EXCH01.corp.example.org", extra_headers="X-MS-Exchange-Message-Is-Ndr:\n"),
    kind="soft", recipients=["ned@corp.example.org"], code="5.2.2")
add("exchange-2003-non-dsn.eml", f"""
Return-Path: <>
From: System Administrator <postmaster@legacy.example.org>
To: <{VERP.format(sid=33)}>
Subject: Undeliverable: New research in plain words, November
Date: {DATE.format(mm=33)}
Message-ID: <ndr33@legacy.example.org>
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

Your message

  To:      Ola Park
  Subject: New research in plain words, November
  Sent:    Wed, 25 Nov 2026 08:00:00 +0000

did not reach the following recipient(s):

ola@legacy.example.org on Wed, 25 Nov 2026 08:00:05 +0000
    The e-mail account does not exist at the organization this message was sent to.
    Check the e-mail address, or contact the recipient directly to find out the correct address.
    <legacy.example.org #5.1.1>

MSEXCH:IMS:Legacy:EXAMPLE:MAIL01 0 (000C05A6) Unknown Recipient
""", kind="hard", recipients=["ola@legacy.example.org"], code="5.1.1")

# --- Gmail -------------------------------------------------------------------------------------------
GMAIL_HUMAN = """** Address not found **

Your message wasn't delivered to {rcpt} because the address couldn't be found, or is unable to receive mail.

Learn more here: https://support.google.example/mail/answer/6596

The response from the remote server was:
{diag}"""


def gmail(name: str, rcpt: str, sid: int, action: str, status: str, diag: str, human: str | None = None,
          **expected: object) -> None:
    add(name, dsn(mta_from="Mail Delivery Subsystem <mailer-daemon@googlemail.com>",
                  subject="Delivery Status Notification (Failure)" if action == "failed" else
                  "Delivery Status Notification (Delay)",
                  human=human or GMAIL_HUMAN.format(rcpt=rcpt, diag=diag), rcpt=rcpt, sid=sid, action=action,
                  status=status, diag=diag, reporting="googlemail.com", original_part="rfc822",
                  boundary="000000000000a1b2c3d4e5f6", extra_headers="X-Failed-Recipients: " + rcpt + "\n"
                  if action == "failed" else ""), **expected)


gmail("gmail-no-such-user.eml", "pat.quinn@gmail.example", 41, "failed", "5.1.1",
      "550 5.1.1 The email account that you tried to reach does not exist. Please try double-checking the "
      "recipient's email address for typos or unnecessary spaces. a1si123.456 - gsmtp",
      kind="hard", recipients=["pat.quinn@gmail.example"], code="5.1.1")
gmail("gmail-over-quota.eml", "rae@gmail.example", 42, "failed", "5.2.2",
      "552 5.2.2 The email account that you tried to reach is over quota. Please direct the recipient to "
      "https://support.google.example/mail/?p=OverQuotaPerm b2si7.8 - gsmtp",
      kind="soft", recipients=["rae@gmail.example"], code="5.2.2")
gmail("gmail-unauthenticated.eml", "sam@gmail.example", 43, "failed", "5.7.26",
      "550 5.7.26 This mail has been blocked because the sender is unauthenticated. Gmail requires all "
      "senders to authenticate with either SPF or DKIM. c3si9.10 - gsmtp",
      kind="soft", recipients=["sam@gmail.example"], code="5.7.26")
gmail("gmail-delayed.eml", "tia@example.net", 44, "delayed", "4.4.1",
      "The recipient server did not accept our requests to connect.",
      human="** Delivery incomplete **\n\nThere was a temporary problem delivering your message to tia@example.net. "
            "Gmail will retry for 46 more hours. You'll be notified if the delivery fails permanently.",
      kind="ignored")
gmail("gmail-domain-no-mx.eml", "uma@nodomain.example", 45, "failed", "5.1.2",
      "DNS Error: DNS type 'mx' lookup of nodomain.example responded with code NXDOMAIN",
      kind="hard", recipients=["uma@nodomain.example"], code="5.1.2")

# --- Yahoo -------------------------------------------------------------------------------------------
add("yahoo-dsn-no-account.eml", dsn(
    mta_from="MAILER-DAEMON@yahoo.example", subject="Failure Notice",
    human="Sorry, we were unable to deliver your message to the following address.\n\n<vic@yahoo.example>:\n"
          "554: delivery error: dd This user doesn't have a yahoo.example account (vic@yahoo.example) [0] - "
          "mta1010.mail.gq1.yahoo.example",
    rcpt="vic@yahoo.example", sid=51, action="failed", status="5.0.0",
    diag="554 delivery error: dd This user doesn't have a yahoo.example account (vic@yahoo.example) [0]",
    reporting="mta1010.mail.gq1.yahoo.example"),
    kind="hard", recipients=["vic@yahoo.example"], code="5.0.0")
add("yahoo-classic-non-dsn.eml", f"""
Return-Path: <>
From: MAILER-DAEMON@yahoo.example
To: {VERP.format(sid=52)}
Subject: Failure Notice
Date: {DATE.format(mm=52)}
Message-ID: <failure52@yahoo.example>
Content-Type: text/plain; charset=us-ascii

Sorry, we were unable to deliver your message to the following address.

<wes@yahoo.example>:
Remote host said: 554 delivery error: dd Sorry your message to wes@yahoo.example cannot be delivered. This mailbox is disabled (554.30). [BODY]

--- Below this line is a copy of the message.

{original("wes@yahoo.example", 52)}
Hello,
""", kind="hard", recipients=["wes@yahoo.example"], code="")
add("yahoo-deferred-then-failed.eml", dsn(
    mta_from="MAILER-DAEMON@mx1.ms-research.example.org (Mail Delivery System)",
    subject="Undelivered Mail Returned to Sender",
    human=POSTFIX_INTRO.format(rcpt="xia@yahoo.example", host="mta7.am0.yahoodns.example",
                               diag="421 4.7.0 [TSS04] Messages from 198.51.100.7 temporarily deferred due to "
                                    "unexpected volume or user complaints"),
    rcpt="xia@yahoo.example", sid=53, action="failed", status="4.7.0",
    diag="421 4.7.0 [TSS04] Messages from 198.51.100.7 temporarily deferred due to unexpected volume or user "
         "complaints", reporting="mx1.ms-research.example.org"),
    kind="soft", recipients=["xia@yahoo.example"], code="4.7.0")

# --- Microsoft 365 / Outlook.com ---------------------------------------------------------------------
M365_HUMAN = """Your message to {rcpt} couldn't be delivered.
{words}
Action Required

How to Fix It
{fix}

Diagnostic information for administrators:
Generating server: AM0PR01MB1234.eurprd01.prod.outlook.example
{rcpt}
Remote server returned '{diag}'"""


def m365(name: str, rcpt: str, sid: int, status: str, diag: str, words: str, fix: str,
         **expected: object) -> None:
    add(name, dsn(mta_from="Microsoft Outlook <MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@charity.example>",
                  subject="Undeliverable: New research in plain words, November",
                  human=M365_HUMAN.format(rcpt=rcpt, words=words, fix=fix, diag=diag), rcpt=rcpt, sid=sid,
                  action="failed", status=status, diag=diag,
                  reporting="AM0PR01MB1234.eurprd01.prod.outlook.example", original_part="headers",
                  extra_headers="X-MS-Exchange-Message-Is-Ndr:\nThread-Topic: New research in plain words\n",
                  boundary="_000_AM0PR01MB1234_"), **expected)


m365("m365-recipient-not-found.eml", "yuri@charity.example", 61, "5.1.10",
     "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient yuri@charity.example not found by SMTP address lookup",
     "yuri wasn't found at charity.example.", "The address may be misspelled or may not exist.",
     kind="hard", recipients=["yuri@charity.example"], code="5.1.10")
m365("m365-access-denied.eml", "zoe@charity.example", 62, "5.4.1",
     "550 5.4.1 Recipient address rejected: Access denied. For more information see "
     "https://aka.example/EXOSmtpErrors [AM0PR01MB1234.eurprd01.prod.outlook.example]",
     "zoe wasn't found at charity.example.", "The address may be misspelled or may not exist.",
     kind="hard", recipients=["zoe@charity.example"], code="5.4.1")
m365("m365-ip-blocked.eml", "abe@charity.example", 63, "5.7.708",
     "550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP.",
     "Your message wasn't delivered because the recipient's email provider rejected it.",
     "The sending server's IP address is on a block list; this is about the sender, not the recipient.",
     kind="soft", recipients=["abe@charity.example"], code="5.7.708")
m365("outlook-mailbox-unavailable.eml", "bea@outlook.example", 64, "5.5.0",
     "550 5.5.0 Requested action not taken: mailbox unavailable (S2017062302). "
     "[DB5EUR03FT012.eop-EUR03.prod.protection.outlook.example]",
     "bea wasn't found at outlook.example.", "The address may be misspelled or may not exist.",
     kind="hard", recipients=["bea@outlook.example"], code="5.5.0")

# --- qmail (QSBMF) -----------------------------------------------------------------------------------


def qmail(name: str, rcpt: str, sid: int, words: str, **expected: object) -> None:
    add(name, f"""
Return-Path: <>
Date: {DATE.format(mm=sid)}
From: MAILER-DAEMON@mail.qmail.example
To: {VERP.format(sid=sid)}
Subject: failure notice

Hi. This is the qmail-send program at mail.qmail.example.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<{rcpt}>:
{words}

--- Below this line is a copy of the message.

{original(rcpt, sid)}
Hello,
""", **expected)


qmail("qmail-no-mailbox.eml", "cal@qmail.example", 71, "Sorry, no mailbox here by that name. (#5.1.1)",
      kind="hard", recipients=["cal@qmail.example"], code="5.1.1")
qmail("qmail-over-quota.eml", "dot@qmail.example", 72,
      "The users mailfolder is over the allowed quota (size). (#5.2.2)",
      kind="soft", recipients=["dot@qmail.example"], code="5.2.2")
qmail("qmail-remote-user-unknown.eml", "eve@remote.example", 73,
      "203.0.113.9 does not like recipient.\nRemote host said: 550 5.1.1 <eve@remote.example>... User unknown\n"
      "Giving up on 203.0.113.9.", kind="hard", recipients=["eve@remote.example"], code="5.1.1")

# --- sendmail, OpenSMTPD, a relay notice -------------------------------------------------------------
add("sendmail-user-unknown.eml", dsn(
    mta_from="Mail Delivery Subsystem <MAILER-DAEMON@sendmail.example>",
    subject="Returned mail: see transcript for details",
    human="The original message was received at Wed, 25 Nov 2026 08:00:01 GMT\nfrom mx1.ms-research.example.org\n\n"
          "   ----- The following addresses had permanent fatal errors -----\n<fox@sendmail.example>\n"
          "    (reason: 550 5.1.1 <fox@sendmail.example>... User unknown)",
    rcpt="fox@sendmail.example", sid=81, action="failed", status="5.1.1",
    diag="550 5.1.1 <fox@sendmail.example>... User unknown", reporting="sendmail.example"),
    kind="hard", recipients=["fox@sendmail.example"], code="5.1.1")
add("opensmtpd-action-error.eml", dsn(
    mta_from="Mailer Daemon <MAILER-DAEMON@smtpd.example>", subject="Delivery status notification: error",
    human="Hi!\n\nThis is the MAILER-DAEMON, please DO NOT REPLY to this email.\n\nAn error has occurred while "
          "attempting to deliver a message for\nthe following list of recipients:\n\ngil@smtpd.example: "
          "550 Invalid recipient",
    rcpt="gil@smtpd.example", sid=82, action="error", status="5.0.0", diag="550 Invalid recipient",
    reporting="smtpd.example"),
    kind="hard", recipients=["gil@smtpd.example"], code="5.0.0")
add("relay-delivered-notice.eml", dsn(
    mta_from="MAILER-DAEMON@relay.example", subject="Successful Mail Delivery Report",
    human="This is the mail system at host relay.example.\n\nYour message was successfully delivered to the "
          "destination(s)\nlisted below.", rcpt="hoa@relay.example", sid=83, action="delivered", status="2.0.0",
    diag="250 2.0.0 Ok: queued", reporting="relay.example"),
    kind="ignored")

# --- malformed ---------------------------------------------------------------------------------------
add("malformed-dsn-no-recipient.eml", """
Return-Path: <>
From: MAILER-DAEMON@broken.example
To: bounces@bounces.ms-research.example.org
Subject: Undelivered Mail Returned to Sender
Content-Type: multipart/report; report-type=delivery-status; boundary="zz"

--zz
Content-Type: text/plain

Something failed.

--zz
Content-Type: message/delivery-status

Reporting-MTA: dns; broken.example

Action: failed
Status: 5.1.1

--zz--
""", kind="error")
add("malformed-report-no-boundary.eml", """
Return-Path: <>
From: MAILER-DAEMON@broken.example
To: bounces@bounces.ms-research.example.org
Subject: Undelivered Mail Returned to Sender
Content-Type: multipart/report; report-type=delivery-status

This report lost its boundary on the way.
Final-Recipient: rfc822; ivy@example.net
Action: failed
Status: 5.1.1
""", kind="error")

# --- ARF complaints (RFC 5965) -----------------------------------------------------------------------


def arf(name: str, *, feedback: str, sid: int, rcpt_line: str, to: str, reporter: str, ua: str,
        full_original: bool = True, **expected: object) -> None:
    orig_to = to
    orig = original(orig_to, sid)
    part3 = (f"Content-Type: message/rfc822\nContent-Disposition: inline\n\n{orig}\nHello,\n"
             if full_original else f"Content-Type: text/rfc822-headers\n\n{orig}")
    add(name, f"""
Return-Path: <{reporter}>
From: <{reporter}>
To: <{VERP.format(sid=sid)}>
Subject: FW: New research in plain words, November
Date: {DATE.format(mm=sid % 60)}
Message-ID: <arf.{sid}@{reporter.partition('@')[2]}>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report;
	boundary="part1_13d.2e68ed54_report"

--part1_13d.2e68ed54_report
Content-Type: text/plain; charset="US-ASCII"
Content-Transfer-Encoding: 7bit

This is an email abuse report for an email message received from IP 198.51.100.7 on
Wed, 25 Nov 2026 08:00:05 +0000. For more information about this format please see
https://www.rfc-editor.org/rfc/rfc5965.

--part1_13d.2e68ed54_report
Content-Type: message/feedback-report

Feedback-Type: {feedback}
User-Agent: {ua}
Version: 1
{rcpt_line}Arrival-Date: Wed, 25 Nov 2026 08:00:05 +0000
Source-IP: 198.51.100.7
Reported-Domain: ms-research.example.org

--part1_13d.2e68ed54_report
{part3}
--part1_13d.2e68ed54_report--
""", **expected)


arf("arf-yahoo-abuse.eml", feedback="abuse", sid=91, rcpt_line="Original-Rcpt-To: jay@yahoo.example\n",
    to="jay@yahoo.example", reporter="feedbackloop@yahoo.example", ua="Yahoo!-Mail-Feedback/2.0",
    kind="complaint", recipients=["jay@yahoo.example"])
arf("arf-aol-abuse-no-rcpt.eml", feedback="abuse", sid=92, rcpt_line="", to="kai@aol.example",
    reporter="scomp@aol.example", ua="AOL SComp", kind="complaint", recipients=["kai@aol.example"])
arf("arf-microsoft-redacted.eml", feedback="abuse", sid=93, rcpt_line="", to="[redacted]",
    reporter="staff@hotmail.example", ua="Microsoft JMRP", full_original=False,
    kind="complaint", recipients=[])
arf("arf-fraud.eml", feedback="fraud", sid=94, rcpt_line="Original-Rcpt-To: <lea@isp.example>\n",
    to="lea@isp.example", reporter="fbl@isp.example", ua="ISP-FBL/1.1",
    kind="complaint", recipients=["lea@isp.example"])
arf("arf-other-headers-only.eml", feedback="other", sid=95, rcpt_line="Original-Rcpt-To: mo@isp.example\n",
    to="mo@isp.example", reporter="fbl@isp.example", ua="ISP-FBL/1.1", full_original=False,
    kind="complaint", recipients=["mo@isp.example"])
arf("arf-not-spam.eml", feedback="not-spam", sid=96, rcpt_line="Original-Rcpt-To: nia@isp.example\n",
    to="nia@isp.example", reporter="fbl@isp.example", ua="ISP-FBL/1.1", kind="ignored")
add("arf-malformed-no-type.eml", """
From: <fbl@isp.example>
To: <bounces@bounces.ms-research.example.org>
Subject: complaint
Content-Type: multipart/report; report-type=feedback-report; boundary="q"

--q
Content-Type: text/plain

A complaint.

--q
Content-Type: message/feedback-report

User-Agent: ISP-FBL/1.1
Version: 1

--q--
""", kind="error")

# --- auto-replies and ordinary replies ---------------------------------------------------------------
AUTO = [
    ("autoreply-vacation.eml", "Auto-Submitted: auto-replied\nPrecedence: junk\n", "Away until 2 December",
     "I am away until 2 December with no email. I will read your message when I am back.\n"),
    ("autoreply-exchange.eml", "X-Auto-Response-Suppress: All\nX-MS-Exchange-Inbox-Rules-Loop: ola@corp.example.org\n",
     "Automatic reply: New research in plain words, November",
     "Thank you for your email. I am out of the office until Monday.\n"),
    ("autoreply-gmail-vacation.eml", "Auto-Submitted: auto-replied\n", "Re: New research in plain words, November",
     "Hello, I'm on leave this week and will answer when I return.\n"),
    ("autoreply-subject-only.eml", "", "Out of Office: New research in plain words, November",
     "I'm out of the office, back on the 30th.\n"),
    ("autoreply-x-autoreply.eml", "X-Autoreply: yes\n", "Your message", "This mailbox is not monitored.\n"),
]
for index, (name, headers, subject, body) in enumerate(AUTO):
    add(name, f"""
Return-Path: <>
From: Someone <someone{index}@example.net>
To: <{VERP.format(sid=100 + index)}>
Subject: {subject}
Date: {DATE.format(mm=index)}
Message-ID: <auto{index}@example.net>
In-Reply-To: <2026-11-25.{100 + index}.0f1e2d3c4b5a69788796@ms-research.example.org>
{headers}Content-Type: text/plain; charset=utf-8

{body}""", kind="auto-reply")
add("human-reply.eml", f"""
From: Pia Reader <pia@example.net>
To: <newsletter@ms-research.example.org>
Subject: Re: New research in plain words, November
Date: {DATE.format(mm=7)}
Message-ID: <reply7@example.net>
Content-Type: text/plain; charset=utf-8

Thank you for the summary about iron levels, it helped me talk to my doctor.
""", kind="ignored")


def main() -> None:
    lines = ["# Expected verdict per message (written from what each message means, not from the parser).",
             "# kind: hard | soft | complaint | auto-reply | ignored | error (unreadable report)", ""]
    for old in HERE.glob("*.eml"):
        old.unlink()
    for name, text, expected in CORPUS:
        (HERE / name).write_bytes(text.replace("\n", "\r\n").encode("utf-8"))
        lines.append(f'["{name}"]')
        for key, value in expected.items():
            rendered = "[" + ", ".join(f'"{v}"' for v in value) + "]" if isinstance(value, list) else f'"{value}"'
            lines.append(f"{key} = {rendered}")
        lines.append("")
    (HERE / "verdicts.toml").write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {len(CORPUS)} messages to {HERE}")


if __name__ == "__main__":
    main()
