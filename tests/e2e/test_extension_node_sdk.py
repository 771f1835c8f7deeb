"""Layotto's official Node SDK (npm `layotto` 1.18.0, installed in tests/e2e/node) drives the
extension services: client.oss (streamed put and get) and client.cryption."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
from pathlib import Path

from tests.support.services import missing
from tests.support.sidecar import running_sidecar

NODE_DIR = Path(__file__).parent / "node"
KEY = base64.b64encode(os.urandom(32)).decode()

SCRIPT = r"""
const { Client } = require('layotto');
const { Readable } = require('node:stream');
const crypto = require('node:crypto');

async function main() {
  const client = new Client(process.env.PORT, '127.0.0.1', {
    ossEnable: true,
    cryption: { componentName: 'kms' },
  });
  const out = {};
  const body = crypto.randomBytes(2 * 1024 * 1024 + 777);
  const put = await client.oss.put({
    storeName: 'oss', bucket: 'node-bucket', key: '/reports/r1.bin',
    body: Readable.from([body.subarray(0, 1000000), body.subarray(1000000)]),
    contentLength: body.length,
  });
  out.putEtag = put.etag;
  out.md5 = crypto.createHash('md5').update(body).digest('hex');
  const got = await client.oss.get({ storeName: 'oss', bucket: 'node-bucket', key: 'reports/r1.bin' });
  const chunks = [];
  for await (const chunk of got.object) chunks.push(Buffer.from(chunk));
  out.sameBody = Buffer.concat(chunks).equals(body);
  out.getEtag = got.etag;
  const listed = await client.oss.list({ storeName: 'oss', bucket: 'node-bucket', prefix: 'reports/' });
  out.listed = listed.contentsList.map((o) => [o.key, o.size]);
  try {
    await client.oss.head({ storeName: 'notexists', bucket: 'b', key: 'k' });
  } catch (err) {
    out.unknownStore = [err.code, err.details];
  }

  const enc = await client.cryption.encrypt({ plainText: 'hello from node', keyId: 'k1' });
  out.keyId = enc.keyId;
  const dec = await client.cryption.decrypt({ cipherText: Buffer.from(enc.cipherText, 'base64') });
  out.plain = dec.plainText.toString();
  console.log(JSON.stringify(out));
  client.close?.();
}
main().then(() => process.exit(0), (err) => { console.error(err); process.exit(1); });
"""


def _need(condition: bool, reason: str) -> None:
    if not condition:
        missing(reason)


async def test_node_sdk_oss_and_cryption(tmp_path: Path) -> None:
    node = shutil.which("node")
    _need(node is not None, "node is not installed")
    _need((NODE_DIR / "node_modules" / "layotto").is_dir(), "run `npm install` in tests/e2e/node")
    assert node is not None
    config = {
        "oss": {"oss": {"type": "local", "metadata": {"rootPath": str(tmp_path / "objects")}}},
        "cryption": {"kms": {"type": "local", "metadata": {"keys": json.dumps({"k1": KEY})}}},
    }
    async with running_sidecar(config) as (_, address):
        proc = await asyncio.create_subprocess_exec(
            node,
            "-e",
            SCRIPT,
            cwd=NODE_DIR,
            env={**os.environ, "PORT": address.rsplit(":", 1)[1]},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, stderr.decode()
    out = json.loads(stdout.decode().strip().splitlines()[-1])
    assert out["putEtag"] == out["md5"] == out["getEtag"]
    assert out["sameBody"] is True
    assert out["listed"] == [["reports/r1.bin", 2 * 1024 * 1024 + 777]]
    assert out["unknownStore"] == [3, "not supported store type: notexists"]
    assert (out["keyId"], out["plain"]) == ("k1", "hello from node")
