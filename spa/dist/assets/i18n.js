// The dashboard's message catalogue and its locale-aware formatters.
//
// Every string the dashboard shows is written in English in app.js and goes
// through t(), which looks it up here for the chosen language; a string the
// catalogue lacks is shown in English (a missing translation is untidy, not
// broken). {name} placeholders are filled from t's second argument.
//
// The language comes from the switch in the header (kept in localStorage),
// else from the browser: Japanese when navigator.languages prefers it.

const LANG_KEY = 'kanade.lang';
const TZ_KEY = 'kanade.tz';

// ja holds the Japanese text of every English message.
const ja = {
  // navigation and chrome
  'Overview': '概要', 'Agents': 'エージェント', 'Results': '実行結果', 'Executions': '実行',
  'Jobs': 'ジョブ', 'Schedules': 'スケジュール', 'Groups': 'グループ', 'Releases': 'リリース',
  'Audit': '監査', 'Accounts': 'アカウント', 'Log out': 'ログアウト', 'Skip to content': '本文へ移動',
  'Local time': 'ローカル時刻', 'UTC': 'UTC', 'Time zone': 'タイムゾーン', 'Language': '言語',
  'sections': 'セクション', 'Loading…': '読み込み中…',
  'live · updated {time}': 'ライブ · {time} 更新', 'stale since {time}': '{time} から更新なし',
  'stale since {time} · retrying': '{time} から更新なし · 再試行中',
  // sign-in
  'Sign in': 'サインイン', 'Username': 'ユーザー名', 'Password': 'パスワード', 'username': 'ユーザー名',
  'password': 'パスワード', 'Use an access token instead': 'アクセストークンを使う',
  'Access token': 'アクセストークン', 'access token': 'アクセストークン', 'Use token': 'トークンを使う',
  'Paste the token printed by the server at start-up (the text after #token= in the dashboard address).':
    'サーバーが起動時に表示したトークン（ダッシュボードのアドレスの #token= の後ろ）を貼り付けてください。',
  'Sign in with a username instead': 'ユーザー名でサインインする',
  'The server refused the stored token ({reason}).': 'サーバーが保存済みトークンを拒否しました（{reason}）。',
  'Choose a new password': '新しいパスワードを設定', 'Change password': 'パスワードを変更',
  'Current password': '現在のパスワード', 'New password': '新しいパスワード', 'New password again': '新しいパスワード（確認）',
  'current password': '現在のパスワード', 'new password': '新しいパスワード', 'new password again': '新しいパスワード（確認）',
  'Your password was set by someone else. Choose your own (at least 8 characters) to go on.':
    'パスワードは他の人が設定したものです。続けるには自分のパスワード（8 文字以上）を設定してください。',
  'the new passwords differ': '新しいパスワードが一致しません',
  // overview
  'Fleet': 'フリート', 'observed': '観測', 'known': '登録', 'active': '稼働中', 'stale': '応答なし',
  'Results, last {n} h': '実行結果（直近 {n} 時間）', 'total': '合計', 'failed': '失敗', 'skipped': 'スキップ',
  'JetStream': 'JetStream', 'healthy': '正常', 'Missing JetStream resources: ': '不足している JetStream リソース: ',
  'Failing: ': '異常: ', 'ok': '正常', 'degraded': '低下', 'unknown': '不明',
  'Needs attention': '要対応', 'Nothing needs attention.': '対応が必要な項目はありません。',
  '{n} PCs have not sent a heartbeat recently': '{n} 台の PC から最近ハートビートがありません',
  '{job}: exit {code} on {n} PCs': '{job}: 終了コード {code}（{n} 台）',
  '{pc} failed {n} times': '{pc} が {n} 回失敗',
  '{n} JetStream resources are missing': 'JetStream リソースが {n} 個不足しています',
  'Next up': '次の実行', 'No schedule fires soon.': '近く実行されるスケジュールはありません。',
  'Recent executions': '最近の実行', 'No executions yet.': '実行はまだありません。',
  'Agent versions': 'エージェントのバージョン', 'No agents have reported a version.': 'バージョンを報告したエージェントはありません。',
  'Run durations, last 24 h': '実行時間（直近 24 時間）', 'Run durations': '実行時間',
  'No finished runs in the last 24 hours.': '直近 24 時間に終了した実行はありません。',
  'job': 'ジョブ', 'runs': '回数', 'min': '最小', 'p50': 'p50', 'p95': 'p95', 'p99': 'p99', 'max': '最大', 'mean': '平均',
  'No agents yet': 'エージェントはまだありません',
  'Point an agent at this backend: set its NATS URL to this server\'s NATS address (nats://{host}:4222 unless -nats-listen says otherwise) and its token to the NATS token the server was started with (-nats-token / KANADE_NATS_TOKEN).':
    'エージェントをこのバックエンドに向けてください: NATS URL をこのサーバーの NATS アドレス（-nats-listen の指定がなければ nats://{host}:4222）に、トークンをサーバー起動時の NATS トークン（-nats-token / KANADE_NATS_TOKEN）に設定します。',
  'To try the dashboard with a simulated fleet, start the server with -demo 300.':
    'シミュレーションのフリートで試すには、サーバーを -demo 300 で起動してください。',
  'all agents': '全エージェント', 'online': 'オンライン', 'offline': 'オフライン',
  // lists
  'More': 'さらに表示', '{n} shown': '{n} 件表示', '{n} of {total}': '{total} 件中 {n} 件表示', '{n} shown, more available': '{n} 件表示（続きあり）',
  'Nothing here yet.': 'まだ何もありません。', 'No agents match.': '該当するエージェントはありません。',
  'No runs match.': '該当する実行結果はありません。', 'No audit events yet.': '監査イベントはまだありません。',
  'search pc_id or hostname': 'pc_id またはホスト名で検索', 'status': '状態', 'all': 'すべて',
  'pc_id': 'pc_id', 'hostname': 'ホスト名', 'os': 'OS', 'version': 'バージョン', 'last heartbeat': '最終ハートビート',
  'state': '状態', 'result': '結果', 'started': '開始', 'duration': '所要時間', 'success': '成功', 'failure': '失敗',
  'running': '実行中', 'reaped': '回収済み', 'exit {code}': '終了 {code}', 'exec': '実行', 'by': '実行者', 'at': '日時',
  'targets': '対象', 'progress': '進捗', 'Audit log': '監査ログ', 'when': '日時', 'actor': '操作者', 'action': '操作',
  'target': '対象', 'payload': '内容', 'job_id': 'job_id', 'exec_id': 'exec_id',
  'Failed runs by job and exit code': 'ジョブと終了コード別の失敗',
  'PCs': 'PC 数', 'first stderr line': 'stderr の 1 行目', 'exit code': '終了コード',
  'No failed runs among the latest {n}.': '最新 {n} 件に失敗はありません。',
  'Failures among the latest {n} runs that match.': '条件に合う最新 {n} 件の実行のうちの失敗。',
  // details
  'Run': '実行結果', 'Agent': 'エージェント', 'Execution': '実行', 'Job': 'ジョブ', 'Schedule': 'スケジュール',
  'stdout': 'stdout', 'stderr': 'stderr', 'details': '詳細', '(empty)': '（空）', '(none)': '（なし）',
  'agent {pc}': 'エージェント {pc}', 'all runs of {job}': '{job} のすべての実行', 'runs on this agent': 'このエージェントの実行',
  'runs of this job': 'このジョブの実行', 'runs of its job': 'ジョブの実行', 'script': 'スクリプト',
  'schedules that run it': 'このジョブを実行するスケジュール', 'No schedule runs this job.': 'このジョブを実行するスケジュールはありません。',
  'stored value': '保存値', 'next firings': '次回の起動', 'Not found': '見つかりません',
  'No page at ': 'ページがありません: ', 'Back to the overview': '概要に戻る',
  'groups': 'グループ', 'effective config': '有効な設定', 'Ping': 'Ping', 'Ping this agent': 'このエージェントに Ping',
  'Pinging…': 'Ping 中…', 'Pong in {ms}': '{ms} で応答', 'Recent log lines': '最近のログ', 'Show logs': 'ログを表示',
  '{done} of {n} PCs answered: {ok} succeeded, {failed} failed, {skipped} skipped':
    '{n} 台中 {done} 台が応答: 成功 {ok}、失敗 {failed}、スキップ {skipped}',
  'all runs of this execution': 'この実行のすべての結果', 'job contains': 'ジョブ（部分一致）',
  'PC or hostname contains': 'PC またはホスト名（部分一致）', 'started from': '開始（以降）', 'started before': '開始（より前）',
  'per-PC results': 'PC ごとの結果',
  'Kill': '停止', 'Kill this execution?': 'この実行を停止しますか？', 'Cancel': 'キャンセル', 'Confirm': '確定',
  'Kill requested.': '停止を要求しました。', 'Run now': '今すぐ実行', 'Run {job} now on its target?': '{job} を対象に今すぐ実行しますか？',
  'Started execution {id}.': '実行 {id} を開始しました。',
  // schedules
  'Upcoming firings': '今後の起動', 'calendar schedules the worker fires, soonest first': 'ワーカーが起動するカレンダースケジュール（近い順）',
  'No calendar firings ahead.': '今後のカレンダー起動はありません。', 'id': 'id', 'runs on': '実行場所', 'in': 'まで',
  'enabled': '有効', 'disabled': '無効', 'broken': '破損', '{n} broken': '{n} 件破損',
  'last fired': '前回起動', 'last outcome': '前回結果', 'next run': '次回', 'due': '期限',
  'Disable': '無効化', 'Enable': '有効化', 'Disable {id}?': '{id} を無効にしますか？',
  '{id} is disabled.': '{id} を無効にしました。', '{id} is enabled.': '{id} を有効にしました。',
  'Edit YAML': 'YAML を編集', 'Save': '保存', 'Saved.': '保存しました。',
  'Broken, the worker skips it: ': '破損しているためワーカーはスキップします: ',
  'No jobs yet — put one with PUT /api/jobs/{id}.': 'ジョブはまだありません — PUT /api/jobs/{id} で追加できます。',
  'No schedules yet — put one with PUT /api/schedules/{id}.': 'スケジュールはまだありません — PUT /api/schedules/{id} で追加できます。',
  'Disabled: it does not fire.': '無効: 起動しません。', 'Broken: it does not fire.': '破損: 起動しません。',
  // freeze
  'The fleet is frozen: {reason}': 'フリートは凍結中です: {reason}', 'Freeze the fleet': 'フリートを凍結',
  'Unfreeze': '凍結を解除', 'reason': '理由', 'Freeze': '凍結', 'The fleet is frozen.': 'フリートは凍結中です。',
  'The fleet is not frozen.': 'フリートは凍結されていません。',
  // groups, releases
  'members': 'メンバー', 'alive': '稼働', 'has config': '設定あり', 'yes': 'はい', 'no': 'いいえ',
  'No groups yet.': 'グループはまだありません。', 'fleet config': 'フリート設定',
  'No releases published.': '公開されたリリースはありません。', 'Agent releases': 'エージェントのリリース',
  'rollout': 'ロールアウト', 'Versions in the fleet': 'フリート内のバージョン',
  // accounts
  'role': '役割', 'must change password': 'パスワード変更要', 'created': '作成', 'updated': '更新',
  'Reset password': 'パスワードをリセット', 'Delete': '削除', 'Set password': 'パスワードを設定',
  'new account': '新しいアカウント', 'Create': '作成', 'you': 'あなた',
  ' must change the password at the first sign-in': ' 初回サインイン時にパスワード変更が必要',
  // durations and relative times
  '{n} ms': '{n} ミリ秒', '{n} s': '{n} 秒', '{m} min {s} s': '{m} 分 {s} 秒', '{h} h {m} min': '{h} 時間 {m} 分',
  '{n} s ago': '{n} 秒前', '{n} min ago': '{n} 分前', '{n} h ago': '{n} 時間前', '{n} d ago': '{n} 日前',
  'in the future': '未来', 'in {n} s': '{n} 秒後', 'in {n} min': '{n} 分後', 'in {n} h': '{n} 時間後',
  'in {n} d': '{n} 日後', 'in {d} d {h} h': '{d} 日 {h} 時間後',
  'cannot reach the server: ': 'サーバーに接続できません: ',
  // editor and actions
  'Edit YAML': 'YAML を編集', 'New job': '新しいジョブ', 'New schedule': '新しいスケジュール', 'Save': '保存', 'Edit': '編集',
  'New {noun}': '新しい {noun}', '{noun} as YAML': '{noun}（YAML）', '{id} is saved.': '{id} を保存しました。',
  'The server refused it (HTTP {status}):': 'サーバーが拒否しました（HTTP {status}）:',
  'line {line}, column {col}': '{line} 行 {col} 列',
  'Checked by the server when saved (JSON Schema: /api/schemas/{file}).': '保存時にサーバーが検証します（JSON Schema: /api/schemas/{file}）。',
  'Only an operator or admin can edit {noun}s.': '{noun} を編集できるのはオペレーターか管理者だけです。',
  'Edit config': '設定を編集', 'Config scope (JSON)': '設定スコープ（JSON）', 'config scope as JSON': '設定スコープ（JSON）',
  'Config saved.': '設定を保存しました。', 'not JSON: ': 'JSON ではありません: ',
  'Add to group': 'グループに追加', 'group': 'グループ', 'Remove': '外す', '{pc} is in: {groups}': '{pc} の所属: {groups}',
  'Remove {pc} from {group}?': '{pc} を {group} から外しますか？', '{pc} left {group}.': '{pc} を {group} から外しました。',
  'Roll out': 'ロールアウト', 'Roll {version} out to': '{version} のロールアウト先', 'scope': 'スコープ', 'rollout': 'ロールアウト',
  'global': '全体', 'pc': 'PC', 'group or PC': 'グループまたは PC', 'jitter (e.g. 30m)': 'ジッター（例 30m）',
  '{version} is the target of {scope}.': '{version} を {scope} の目標にしました。',
  'Revoke': '失効', 'Unrevoke': '失効を解除', 'revoked': '失効中',
  'Revoke {job}? Agents skip its queued and retained commands.': '{job} を失効させますか？ エージェントは待機中のコマンドを実行しません。',
  'Let agents run {job} again?': '{job} を再び実行可能にしますか？', '{job} is revoked.': '{job} を失効させました。',
  '{job} is no longer revoked.': '{job} の失効を解除しました。',
};

// The telemetry pages (observe.md): performance, timeline, compliance,
// notifications.
Object.assign(ja, {
  'Timeline': 'タイムライン', 'Compliance': 'コンプライアンス', 'Notifications': '通知', 'Notification': '通知',
  'performance, last 24 h': 'パフォーマンス（直近 24 時間）', 'CPU': 'CPU', 'memory': 'メモリ', 'disk read + write': 'ディスク読み書き',
  '{label}: latest {last}, highest {max}': '{label}: 最新 {last}、最大 {max}',
  'No performance samples in the last 24 hours.': '直近 24 時間のパフォーマンスデータはありません。',
  'No events match.': '該当するイベントはありません。', 'kind': '種類', 'source': 'ソース', 'record': 'レコード',
  'fail': '不合格', 'warn': '警告', 'check': 'チェック', '{n} checks': '{n} 件のチェック', 'PCs by state': '状態別の PC',
  'No check has reported yet.': 'まだ報告されたチェックはありません。', 'PCs of {check}': '{check} の PC',
  'states per PC': 'PC ごとの状態', '{n} rows': '{n} 行', '{n} rows (truncated)': '{n} 行（打ち切り）', 'include ok': '正常も表示',
  'detail': '詳細', 'recorded': '記録', 'No rows.': '行はありません。', 'Every PC is ok.': 'すべての PC が正常です。',
  'info': '情報', 'emergency': '緊急', 'New notification': '新しい通知', 'Notify end users': 'エンドユーザーに通知',
  'title': 'タイトル', 'message': '本文', 'priority': '優先度', 'groups (comma-separated)': 'グループ（カンマ区切り）',
  'PCs (comma-separated)': 'PC（カンマ区切り）', 'users must confirm': '確認を求める', 'every PC': 'すべての PC',
  'Notification {id} sent to {n} subjects.': '通知 {id} を {n} 件の宛先に送信しました。',
  'confirm': '確認', 'issued': '発行', 'expires': '期限', 'No notifications sent yet.': '送信した通知はまだありません。',
  'Not among the last 200 sent.': '直近 200 件の送信にはありません。', 'confirmed by': '確認したユーザー',
  '{n} users on {pcs} PCs': '{pcs} 台の PC で {n} 人', 'user': 'ユーザー', 'confirmed': '確認',
  'Nobody has confirmed it yet.': 'まだ誰も確認していません。',
});

const catalogues = { ja };

export const LANGS = ['en', 'ja'];

function pick() {
  try {
    const stored = localStorage.getItem(LANG_KEY);
    if (LANGS.includes(stored)) return stored;
  } catch { /* storage disabled: follow the browser */ }
  const prefs = navigator.languages?.length ? navigator.languages : [navigator.language || 'en'];
  for (const p of prefs) {
    const base = String(p).toLowerCase().split('-')[0];
    if (LANGS.includes(base)) return base;
  }
  return 'en';
}

export let lang = pick();

export function setLang(l) {
  lang = LANGS.includes(l) ? l : 'en';
  try { localStorage.setItem(LANG_KEY, lang); } catch { /* this tab only */ }
}

// t translates an English message and fills its {placeholders}.
export function t(s, vars) {
  let out = catalogues[lang]?.[s] ?? s;
  if (vars) out = out.replace(/\{(\w+)\}/g, (m, k) => (k in vars ? String(vars[k]) : m));
  return out;
}

// The zone times are shown in: the browser's own, or UTC (a switch in the
// header, kept in localStorage). Every table of times names it.
export let tzMode = (() => {
  try { return localStorage.getItem(TZ_KEY) === 'utc' ? 'utc' : 'local'; } catch { return 'local'; }
})();

export function setTz(m) {
  tzMode = m === 'utc' ? 'utc' : 'local';
  try { localStorage.setItem(TZ_KEY, tzMode); } catch { /* this tab only */ }
}

export function zoneName() {
  if (tzMode === 'utc') return 'UTC';
  return Intl.DateTimeFormat().resolvedOptions().timeZone || 'local';
}

// fmtNum groups digits the way the language does (1,234 in both).
export function fmtNum(n) {
  if (n == null || n === '') return '–';
  const x = Number(n);
  return Number.isFinite(x) ? new Intl.NumberFormat(lang).format(x) : String(n);
}
